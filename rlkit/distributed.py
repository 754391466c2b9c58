"""Data-parallel training on torch.distributed: ``torchrun --nproc-per-node N train.py ...`` runs the same job on N
processes (gloo on CPUs, NCCL on GPUs). Without torchrun every function here is a no-op for one process."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed import rpc

from rlkit.collectives import ring_all_reduce
from rlkit.errors import UserError

ALLREDUCES = ("builtin", "ring")
"""How processes sum gradients, metrics and statistics (``--allreduce``): ``builtin`` is ``dist.all_reduce``,
``ring`` is :func:`rlkit.collectives.ring_all_reduce`, written out on point-to-point messages for teaching. Only
sums change: barriers, DDP's broadcasts (initial weights, batch-norm statistics) and the loop's maximum of its stop
flags stay builtin."""
_allreduce = "builtin"
"""This process's choice, set by :func:`init_distributed` from the run's settings (a process runs one job)."""
DISTRIBUTED = ("ddp", "ps-sync", "ps-async")
"""How a supervised run trains under torchrun (``--distributed``): ``ddp`` is data-parallel (every process steps
its own replica with averaged gradients); ``ps-sync`` and ``ps-async`` make rank 0 a parameter server that holds
the parameters and the optimizer, and the other ranks workers that pull parameters and push gradients
(:mod:`rlkit.parameter_server`): the server waits for every worker's gradient each step, or applies each as it
arrives."""
SERVER_RANK = 0
RPC_INIT_TIMEOUT = 900.0
"""Seconds the processes wait for each other to join the RPC group (the server loads its data and checkpoint first)."""


def init_distributed(device: torch.device, allreduce: str = "builtin") -> tuple[int, int]:
    """(rank, world size). Joins the process group that torchrun describes in the environment (``WORLD_SIZE`` > 1);
    a single process stays as it is. ``allreduce`` (one of :data:`ALLREDUCES`) is how this process sums from now
    on: see :func:`use_allreduce`."""
    if not (dist.is_available() and dist.is_initialized()) and launched_by_torchrun():
        backend = "nccl" if device.type == "cuda" else "gloo"
        use_local_gpu(device)
        dist.init_process_group(backend)
    use_allreduce(allreduce)
    return world()


SLEEPING_TRANSPORT = {"_transports": ["uv"], "_channels": ["basic"]}
"""TensorPipe over TCP through libuv, which waits for messages asleep. Its shared-memory transport (the default on
one machine) polls: actors kept waiting by their learner then took its cores (benchmarks/RESULTS.md, "distributed
actors")."""


def init_actor_rpc(name: str) -> tuple[int, int]:
    """(rank, world size) of this process in the rpc group torchrun describes (TensorPipe), joined as ``name``:
    a replay learner and its actors (:mod:`rlkit.sources.actors`) talk over rpc only, with no process group, so
    nothing else here waits for them in lockstep."""
    global _rpc_joined
    from torch.distributed import rpc

    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    # One rpc thread per actor may wait for the learner to want its chunk: leave threads for the rest.
    options = rpc.TensorPipeRpcBackendOptions(num_worker_threads=max(16, 2 * world_size), **SLEEPING_TRANSPORT)
    rpc.init_rpc(name, rank=rank, world_size=world_size, rpc_backend_options=options)
    _rpc_joined = True
    return rank, world_size


_rpc_joined = False


def use_local_gpu(device: torch.device) -> None:
    """On a GPU, each process of a machine takes its own (torchrun's ``LOCAL_RANK``)."""
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))


def check_distributed(name: str) -> str:
    """``name`` if it is one of :data:`DISTRIBUTED`, else a :class:`UserError`."""
    if name not in DISTRIBUTED:
        raise UserError(f"unknown --distributed {name!r}: use one of {', '.join(DISTRIBUTED)}")
    return name


def is_parameter_server(name: str) -> bool:
    """Whether ``--distributed name`` trains with a parameter server."""
    return check_distributed(name).startswith("ps-")


def init_rpc(mode: str) -> tuple[int, int]:
    """(rank, world size) after joining the RPC group of a parameter-server run (``--distributed mode``) that torchrun
    describes in the environment: rank 0 is ``server``, rank w the ``worker{w}``. No process group is made, so the
    loop and the learners see one process each (their collectives and DDP stay off)."""
    rank, world_size = parameter_server_world(mode)
    options = rpc.TensorPipeRpcBackendOptions(rpc_timeout=RPC_INIT_TIMEOUT)
    rpc.init_rpc(rpc_name(rank), rank=rank, world_size=world_size, rpc_backend_options=options)
    global _rpc_joined
    _rpc_joined = True
    return rank, world_size


def parameter_server_world(mode: str) -> tuple[int, int]:
    """(rank, world size) that torchrun gives this process of a ``--distributed mode`` run; a :class:`UserError`
    unless there is a server and at least one worker."""
    rank, world_size = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if world_size < 2:
        raise UserError(f"--distributed {mode} needs a server and at least one worker: start it under torchrun with "
                        "2 or more processes (rank 0 is the server, the others workers), e.g. torchrun --standalone "
                        "--nproc-per-node 3 train.py ..., or use --distributed ddp")
    return rank, world_size


def rpc_name(rank: int) -> str:
    """The RPC name of a parameter-server run's process of ``rank``."""
    return "server" if rank == SERVER_RANK else f"worker{rank}"


def use_allreduce(name: str) -> None:
    """Sum with ``name`` (one of :data:`ALLREDUCES`) in :func:`all_reduce_sum`, :func:`all_reduce_gradients`,
    :func:`average_metrics` and the DDP hook of :func:`ddp_comm_hook`. Every process must choose the same: in a
    process group that is checked here, since a ring's messages would wait forever for a peer inside
    ``dist.all_reduce``."""
    global _allreduce
    check_allreduce(name)
    if world()[1] > 1:
        code = ALLREDUCES.index(name)
        # max of (code, -code) over processes: (code, -code) again only if every process chose the same
        choices = torch.tensor([code, -code], dtype=torch.int64, device=_collective_device())
        dist.all_reduce(choices, op=dist.ReduceOp.MAX)
        if choices.tolist() != [code, -code]:
            raise UserError(f"this process was given --allreduce {name} but another process a different one: "
                            "start every process with the same --allreduce")
    _allreduce = name


def check_allreduce(name: str) -> str:
    """``name`` if it is one of :data:`ALLREDUCES`, else a :class:`UserError`."""
    if name not in ALLREDUCES:
        raise UserError(f"unknown --allreduce {name!r}: use one of {', '.join(ALLREDUCES)}")
    return name


def _collective_device() -> torch.device:
    """Where tensors for the group's collectives live: NCCL takes GPU tensors only."""
    return torch.device("cuda") if dist.get_backend() == "nccl" else torch.device("cpu")


def launched_by_torchrun() -> bool:
    """Whether this process is one of several that torchrun started."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def world() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """Only the first process writes logs and checkpoints (and prints: torchrun's RANK tells before the group
    is joined)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def average_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """The mean of each metric over all processes (every process must pass the same keys)."""
    if world()[1] == 1 or not metrics:
        return metrics
    keys = sorted(metrics)
    values = torch.tensor([metrics[k] for k in keys], dtype=torch.float64, device=_collective_device())
    all_reduce_sum(values)
    return dict(zip(keys, (values / dist.get_world_size()).tolist()))


def all_reduce_sum(tensor: torch.Tensor) -> None:
    """Sum ``tensor`` over all processes, in place, with the chosen all-reduce (:func:`use_allreduce`)."""
    if _allreduce == "ring":
        ring_all_reduce(tensor)
    else:
        dist.all_reduce(tensor)


def sum_over_processes() -> Callable[[torch.Tensor], None] | None:
    """:func:`all_reduce_sum` under torchrun, None for one process: what statistics kept by every process (such as
    :class:`rlkit.nets.RunningMeanStd`) take to stay equal."""
    return all_reduce_sum if world()[1] > 1 else None


def all_reduce_gradients(params: list[torch.nn.Parameter]) -> None:
    """Average the gradients of ``params`` over all processes (for learners that do not use DDP, such as the
    on-policy agents whose networks run outside their loss)."""
    n = world()[1]
    if n == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    all_reduce_sum(flat)
    flat /= n
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def ddp_comm_hook() -> Callable[[Any, dist.GradBucket], torch.futures.Future[torch.Tensor]] | None:
    """What ``DistributedDataParallel.register_comm_hook(None, hook)`` takes to average gradients with the chosen
    all-reduce; None for the builtin one, which DDP runs itself (overlapped with the backward pass)."""
    return _ring_average_bucket if _allreduce == "ring" else None


def _ring_average_bucket(state: Any, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """DDP's gradient bucket (a flat tensor of several parameters' gradients) ring-summed and divided by the
    world size. It runs to completion before it returns: unlike DDP's own all-reduce it does not overlap with
    the rest of the backward pass."""
    buffer = bucket.buffer()
    ring_all_reduce(buffer)
    buffer.div_(dist.get_world_size())
    done: torch.futures.Future[torch.Tensor] = torch.futures.Future()
    done.set_result(buffer)
    return done


# DDP checks a hook's annotations against the classes themselves: give it those, not this module's strings.
_ring_average_bucket.__annotations__ = {"state": Any, "bucket": dist.GradBucket,
                                        "return": torch.futures.Future[torch.Tensor]}


def shutdown() -> None:
    """Wait for every process to finish (the first one evaluates and saves last), then leave the group; leaving
    without it can abort a process while its peer still talks to it."""
    global _rpc_joined
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    if _rpc_joined:
        from torch.distributed import rpc

        _rpc_joined = False
        try:
            rpc.shutdown()  # graceful: waits for every process's outstanding calls
        except RuntimeError as error:  # a peer left first (it failed, or torchrun stopped it)
            raise UserError(f"process {os.environ.get('RANK', '?')} lost another process while leaving the RPC "
                            f"group ({rpc_error_reason(error)}): the first process's message says why the run "
                            f"stopped") from None


def rpc_error_reason(error: BaseException) -> str:
    """The gist of an RPC error: ``eof`` from ``eof (this error originated at tensorpipe/...)``."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else "connection closed"
    return text.split(" (this error originated")[0]


def run_and_leave(command: Callable[[], object]) -> None:
    """Run a command line (``lambda: run_command(main)``); under torchrun, leave with its exit status however it
    ends, without the interpreter's teardown. A process whose peer died still has RPC and gloo threads talking to it:
    tearing them down aborted it (SIGABRT, ``exception not rethrown``) or hung it until torchrun killed it, after it
    had saved and said why it stopped, and torchrun then reported the abort instead of that reason."""
    if not launched_by_torchrun():
        command()
        return
    try:
        command()
        code = 0
    except SystemExit as leaving:
        if leaving.code is None or isinstance(leaving.code, int):
            code = leaving.code or 0
        else:  # sys.exit("message"), as Python itself would: the message, status 1
            print(leaving.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:
        traceback.print_exc()
        code = 130
    except BaseException:  # noqa: BLE001 - a crash: its traceback, then the same exit as any other ending
        traceback.print_exc()
        code = 1
    exit_without_teardown(code)


def exit_without_teardown(code: int = 0) -> None:
    """End a process whose work is done, saved and whose group is shut down, without C++ static destructors:
    gloo's threads can abort the process there (``terminate called without an active exception``, about 1 exit
    in 20 to 40 on this machine; pytorch/gloo#155), which torchrun would report as a failed run."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
