"""A parameter server on ``torch.distributed.rpc`` (``--distributed ps-sync|ps-async``): rank 0 holds the
parameters and the optimizer, ranks 1..N are workers.

A worker repeats three calls:

    version, state, batch = pull(worker)         # the server's latest parameters, and which batch to compute
    grads = gradients of its batch ``batch``      # on its own shard of every epoch
    push(worker, version, batch, grads)           # returns once the server has applied the gradient

The server's side is :class:`ParameterServer`: pushes go into a queue that the loop's source empties (one push per
worker each step when synchronous, each push on its own when asynchronous), the learner applies them and
:meth:`ParameterServer.publish` makes the new parameters the ones the next pulls get. How far behind a gradient is
(its *staleness*) is the number of versions published between its pull and its application.

Each pull hands out one batch: the server stops handing them out once the run's total is reached, so every pushed
gradient is applied exactly once; a worker that pulls ``None`` is done. The server also holds one call open on each
worker: a worker that dies breaks it, and the source reports that worker (:class:`rlkit.errors.SourceLost`)."""

from __future__ import annotations

import queue
import signal
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.distributed import rpc

from rlkit.distributed import SERVER_RANK, rpc_error_reason, rpc_name
from rlkit.errors import UserError


@dataclass
class Push:
    """A worker's gradient, as the server received it."""

    worker: int
    """The worker's rank (1..N)."""
    version: int
    """The version of the parameters it was computed at."""
    batch: int
    """Its index among the worker's batches (the source's step count on the worker's shard)."""
    grads: list[torch.Tensor]
    """One per trainable parameter, in the learner's order."""
    buffers: list[torch.Tensor]
    """The worker's module buffers after its forward pass (batch-norm running statistics)."""
    metrics: dict[str, float]
    """The worker's loss and accuracy on its batch."""
    applied: torch.futures.Future
    """Completed once the gradient is in the parameters (or the run stopped without it)."""


LOST = object()
"""Put in the queue of pushes when a worker died: the source then reports it."""


class ParameterServer:
    """The server's state that workers reach over RPC: the published parameters, the queue of pushes, and the next
    batch of each worker.

    Args:
        workers: how many workers there are (ranks 1..workers).
        synchronous: every step takes one push of each worker (ps-sync), or one push (ps-async).
    """

    def __init__(self, workers: int, synchronous: bool):
        self.workers, self.synchronous = workers, synchronous
        self.total = 0
        """Gradients to hand out in all (the run's steps; synchronous: each worker's)."""
        self.pushes: queue.Queue[Push | object] = queue.Queue()
        self.next_batch = [0] * workers
        """The index of the batch each worker computes next (a resume starts each at its applied count)."""
        self.version = 0
        self.lost: list[tuple[int, str]] = []
        """(rank, error) of each worker whose connection broke, first death first."""
        self.received = 0
        """Pushes received in all (every one is applied, except those in flight when the run stops)."""
        self._lock = threading.Lock()  # pulls and pushes arrive on RPC threads; the loop publishes on the main one
        self._state: list[torch.Tensor] = []
        self._stopped = False

    # ------------------------------------------------------------------ the server's own side
    def publish(self, state: list[torch.Tensor]) -> int:
        """Make ``state`` (the model's parameters and buffers, in ``state_dict`` order) what pulls return, as the
        next version; returns it."""
        snapshot = [t.detach().to("cpu", copy=True) for t in state]  # the optimizer steps the originals in place
        with self._lock:
            self._state = snapshot
            self.version += 1
            return self.version

    def stop(self) -> None:
        """No more batches; pushes still in the queue are dropped (not applied) and their workers told to stop."""
        with self._lock:
            self._stopped = True
        while True:
            try:
                push = self.pushes.get_nowait()
            except queue.Empty:
                return
            if isinstance(push, Push):
                push.applied.set_result(None)

    def watch(self) -> None:
        """Hold one call open on each worker; a worker that dies fails it, and the source then reports it."""
        for rank in range(1, self.workers + 1):
            rpc.rpc_async(rpc_name(rank), _hold_open, timeout=0).add_done_callback(
                lambda future, rank=rank: self._on_watch_end(rank, future))

    def _on_watch_end(self, rank: int, future: torch.futures.Future) -> None:
        try:
            future.wait()  # returns when the worker left normally, raises when its connection broke
        except RuntimeError as error:
            with self._lock:
                if self._stopped:
                    return
                self.lost.append((rank, rpc_error_reason(error)))
            self.pushes.put(LOST)

    # ------------------------------------------------------------------ what workers call (on RPC threads)
    def pull(self, worker: int) -> tuple[int, list[torch.Tensor], int] | None:
        """(version, parameters and buffers, index of the worker's next batch), or None: nothing left to do."""
        with self._lock:
            index = worker - 1
            left = (self.next_batch[index] < self.total if self.synchronous else sum(self.next_batch) < self.total)
            if self._stopped or not left:
                return None
            batch = self.next_batch[index]
            self.next_batch[index] += 1
            return self.version, self._state, batch

    def push(self, worker: int, version: int, batch: int, grads: list[torch.Tensor], buffers: list[torch.Tensor],
             metrics: dict[str, float]) -> torch.futures.Future:
        applied: torch.futures.Future = torch.futures.Future()
        with self._lock:
            self.received += 1
            if self._stopped:
                applied.set_result(None)
                return applied
            self.pushes.put(Push(worker, version, batch, grads, buffers, metrics, applied))
        return applied


# ---------------------------------------------------------------------------------------------- RPC entry points
_server: ParameterServer | None = None
"""The server of this process (rank 0 only)."""
_leaving: torch.futures.Future = torch.futures.Future()
"""On a worker: completed when it leaves, which ends the server's watch of it normally."""


def serve(server: ParameterServer) -> None:
    """Answer the workers' pulls and pushes with ``server`` (on rank 0, before the RPC group is joined)."""
    global _server
    _server = server


def _pull(worker: int) -> tuple[int, list[torch.Tensor], int] | None:
    assert _server is not None, "pulled from a process that is not the parameter server"
    return _server.pull(worker)


@rpc.functions.async_execution
def _push(worker: int, version: int, batch: int, grads: list[torch.Tensor], buffers: list[torch.Tensor],
          metrics: dict[str, float]) -> torch.futures.Future:
    assert _server is not None, "pushed to a process that is not the parameter server"
    return _server.push(worker, version, batch, grads, buffers, metrics)


@rpc.functions.async_execution
def _hold_open() -> torch.futures.Future:
    return _leaving


# ---------------------------------------------------------------------------------------------- the worker's side
def pull(worker: int) -> tuple[int, list[torch.Tensor], int] | None:
    """The server's latest (version, parameters and buffers, batch index) for ``worker``, or None when done."""
    return rpc.rpc_sync(rpc_name(SERVER_RANK), _pull, args=(worker,), timeout=0)  # a step may wait on evaluation


def push(worker: int, version: int, batch: int, grads: list[torch.Tensor], buffers: list[torch.Tensor],
         metrics: dict[str, float]) -> None:
    """Send a gradient of batch ``batch`` computed at ``version``; returns once the server applied it."""
    rpc.rpc_sync(rpc_name(SERVER_RANK), _push, args=(worker, version, batch, grads, buffers, metrics), timeout=0)


def leave() -> None:
    """End the server's watch of this worker normally (before the RPC group is shut down)."""
    if not _leaving.done():
        _leaving.set_result(None)


def cpu(tensors: Any) -> list[torch.Tensor]:
    """Tensors as RPC sends them without a device map: on the CPU."""
    return [t.detach().cpu() for t in tensors]


class Worker:
    """What a worker process runs instead of the loop: pull, compute the gradient of the batch the server names,
    push, until the server says it is done.

    Args:
        rank: this worker's rank (1..N).
        learner: has ``load_state_tensors(state)`` and ``gradients(batch) -> (grads, buffers, metrics)``
            (:class:`rlkit.supervised.classifier.Classifier`).
        source: the worker's shard; ``load_state_dict({"steps": k})`` then ``next()`` is its batch ``k``
            (:class:`rlkit.sources.batches.ImageBatchSource`).
        seed: the run's seed.
    """

    def __init__(self, rank: int, learner: Any, source: Any, seed: int):
        self.rank, self.learner, self.source, self.seed = rank, learner, source, seed
        self.pushed = 0

    def run(self) -> None:
        # A stop signal is the server's to act on (it finishes its step and saves); the worker leaves when the
        # server says it is done, or is gone.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        try:
            while (pulled := self._reach(pull, self.rank)) is not None:
                version, state, batch = pulled
                self.learner.load_state_tensors(state)
                self.source.load_state_dict({"steps": batch})
                # Dropout's masks from (seed, worker, batch): the same in a resumed run as in an uninterrupted one.
                torch.manual_seed(int(np.random.SeedSequence([self.seed, self.rank, batch]).generate_state(1)[0]))
                grads, buffers, metrics = self.learner.gradients(self.source.next())
                self._reach(push, self.rank, version, batch, cpu(grads), cpu(buffers), metrics)
                self.pushed += 1
        finally:
            leave()

    def _reach(self, call: Any, *args: Any) -> Any:
        """``call(*args)`` on the server; its connection breaking is a one-line error."""
        try:
            return call(*args)
        except RuntimeError as error:  # what RPC raises when the server's process is gone
            raise UserError(f"parameter-server worker {self.rank} lost the server (rank {SERVER_RANK}: "
                            f"{rpc_error_reason(error)}); the server's message says why it stopped") from None
