"""The asynchronous source: A3C's worker processes, and what the shared loop sees of them.

Workers start with the ``forkserver`` method: a fresh, single-threaded server process imports torch and rlkit once
and forks every worker from itself. Plain ``fork`` would copy the main process, which by then runs threads
(PyTorch's OpenMP pool, TensorBoard's writer, ale-py's native vector env) whose locks a child inherits in whatever
state they were in; ``spawn`` is as safe but has each worker import torch again (about two seconds and its own copy
of every module). Each worker builds its own env, runs PyTorch with one intra-op thread, ignores Ctrl-C (the main
process saves the checkpoint and stops it through an event) and sends reports
(:class:`WorkerReport`), or its traceback when it fails, through a queue. A worker ends with the main process, even
when that is killed with SIGKILL and never calls ``close()``: it checks between segments that the main process is
alive (multiprocessing's parent sentinel, any platform), and on Linux the kernel also kills it when its parent dies
(``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import copy
import ctypes
import os
import queue as queue_module
import signal
import sys
import time
import traceback
from collections import defaultdict
from collections.abc import Callable
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch
import torch.multiprocessing as mp

from rlkit.agents.base import Agent  # an A3C: its module imports this one's message types
from rlkit.envs import EpisodeSignals, make_env
from rlkit.errors import UserError
from rlkit.sources.episodes import Episodes

if "forkserver" in mp.get_all_start_methods():
    MP = mp.get_context("forkserver")
    MP.set_forkserver_preload(["rlkit.sources.async_"])  # the server imports torch and rlkit once; workers fork from it
else:  # Windows
    MP = mp.get_context("spawn")


class Segment(NamedTuple):
    """``T`` steps of a worker's ``N`` sub-envs (T <= t_max), collected with its local network."""

    obs: torch.Tensor
    """(T, N, *obs_shape) observations the actions were taken in."""
    actions: torch.Tensor
    """(T, N) or (T, N, action_dim) sampled actions (unclipped)."""
    rewards: torch.Tensor
    """(T, N) training rewards."""
    terminated: torch.Tensor
    """(T, N) 1 where the game ended (no bootstrap)."""
    truncated: torch.Tensor
    """(T, N) 1 where a time limit cut the game (bootstrap from ``final_values``)."""
    final_values: torch.Tensor
    """(T, N) V of the true last observation at truncated steps (0 elsewhere)."""
    last_values: torch.Tensor
    """(N,) V of the observations after the segment."""


class WorkerReport(NamedTuple):
    """What a worker sends the main process now and then."""

    rank: int
    updates: int
    """Updates since the worker's previous report."""
    steps: int
    """Env steps those updates learned from."""
    metrics: dict[str, float]
    """Means over those updates."""
    episodes: list[tuple[int, float, int]]
    """(global step, raw return, length) of the games finished since the previous report."""


class WorkerFailure(NamedTuple):
    """A worker's last message when it raises."""

    rank: int
    traceback: str
    user_error: UserError | None = None
    """A refusal of the user's input (a non-finite reward from their env): one line, no traceback."""


def reserve_steps(counter: Any, total_steps: int, num_steps: int, num_envs: int) -> int:
    """Claim the next segment from the global budget: up to ``num_steps`` vector steps (of ``num_envs`` env steps
    each), fewer at the end; 0 when the budget is spent. The counter moves when the claim is made."""
    with counter.get_lock():
        remaining = total_steps - counter.value
        claimed = min(num_steps, -(-remaining // num_envs)) if remaining > 0 else 0
        counter.value += claimed * num_envs
    return claimed


def _net_input(obs: np.ndarray) -> torch.Tensor:
    x = torch.as_tensor(obs)
    return x if x.dtype == torch.uint8 else x.float()  # image stacks stay bytes: the CNN scales them


@torch.no_grad()
def collect_segment(env: EpisodeSignals, net: torch.nn.Module, obs: np.ndarray, num_steps: int,
                    ) -> tuple[Segment, np.ndarray, list[tuple[float, int]]]:
    """Play ``num_steps`` steps of every sub-env with actions sampled from ``net``.

    Returns the segment, the observations after it, and (raw return, length) of each game that ended in it.
    """
    space = env.single_action_space
    columns: dict[str, list[torch.Tensor]] = defaultdict(list)
    ended = []
    for _ in range(num_steps):
        x = _net_input(obs)
        actions = net.distribution(x).sample()
        env_actions = actions.numpy()
        if isinstance(space, gym.spaces.Box):
            env_actions = np.clip(env_actions, space.low, space.high)
        obs, rewards, terminated, truncated, info = env.step(env_actions)
        final_values = torch.zeros(env.num_envs)
        if truncated.any():  # a time limit cut the game: bootstrap from its true last observation
            final_values[torch.as_tensor(truncated)] = net.value(_net_input(info["final_obs"][truncated]))
        for key, value in (("obs", x), ("actions", actions), ("rewards", torch.as_tensor(rewards)),
                           ("terminated", torch.as_tensor(terminated)), ("truncated", torch.as_tensor(truncated)),
                           ("final_values", final_values)):
            columns[key].append(value)
        ended += [(float(info["episode_return"][i]), int(info["episode_length"][i]))
                  for i in np.flatnonzero(info["episode_done"])]
    stacked = {key: torch.stack(values) for key, values in columns.items()}
    for key in ("rewards", "terminated", "truncated"):
        stacked[key] = stacked[key].float()
    return Segment(**stacked, last_values=net.value(_net_input(obs))), obs, ended


PR_SET_PDEATHSIG = 1
"""prctl option (linux/prctl.h): the signal this process gets when its parent dies."""


def die_with_parent() -> None:
    """Linux: have the kernel SIGKILL this process when its parent (the forkserver, which itself exits when the
    main process does) dies. Elsewhere, or if prctl is unavailable, nothing: the worker loop's check remains."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # no libc symbol: rely on the loop's check
        return
    if os.getppid() == 1:  # the parent died before prctl took effect: the kernel will not tell us
        os._exit(1)


def main_process_alive() -> bool:
    """Whether the process that started this worker still runs (True in the main process itself)."""
    parent = MP.parent_process()
    return parent is None or parent.is_alive()


def run_worker(rank: int, agent: Agent, env_fn: Callable[..., EpisodeSignals], env_name: str, num_envs: int,
               seed: int, sticky_actions: bool, total_steps: int, counter: Any, messages: Any, stop: Any,
               report_every: float) -> None:
    """One actor-learner (the body of a worker process): until the budget in ``counter`` is claimed or ``stop`` is
    set, sync the local net, play a segment, update the shared net; put a report on ``messages`` every
    ``report_every`` seconds and at the end."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group; the main process stops us
    if MP.parent_process() is not None:  # a worker process (not a test running this loop in-process)
        die_with_parent()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed * 1_000 + rank)
        env = env_fn(env_name, num_envs, seed=seed + rank * num_envs, sticky_actions=sticky_actions)
        local_net = copy.deepcopy(agent.net)  # private memory: the segment's gradients are taken at fixed weights
        shared_params, local_params = list(agent.net.parameters()), list(local_net.parameters())
        obs, _ = env.reset()
        sums: dict[str, float] = defaultdict(float)
        updates, steps, episodes, last_report = 0, 0, [], time.monotonic()
        while not stop.is_set():
            if not main_process_alive():  # killed without close(): nobody reads our reports any more
                messages.cancel_join_thread()  # exiting must not wait to flush a pipe nobody drains
                env.close()
                return
            claimed = reserve_steps(counter, total_steps, agent.config.num_steps, num_envs)
            if claimed == 0:
                break
            with torch.no_grad():
                for local, shared in zip(local_params, shared_params):
                    local.copy_(shared)
            segment, obs, ended = collect_segment(env, local_net, obs, claimed)
            agent.step = counter.value  # this worker's copy of the agent: its schedules read the global count
            for key, value in agent.learn(local_net, segment).items():
                sums[key] += value
            updates, steps = updates + 1, steps + claimed * num_envs
            episodes += [(counter.value, episode_return, length) for episode_return, length in ended]
            if time.monotonic() - last_report >= report_every:
                messages.put(WorkerReport(rank, updates, steps, {k: v / updates for k, v in sums.items()}, episodes))
                sums, updates, steps, episodes, last_report = defaultdict(float), 0, 0, [], time.monotonic()
        messages.put(WorkerReport(rank, updates, steps, {k: v / max(updates, 1) for k, v in sums.items()}, episodes))
        env.close()
    except UserError as error:  # the input's fault, not the code's: the main process reports it in one line
        messages.put(WorkerFailure(rank, "", error))
    except BaseException:
        messages.put(WorkerFailure(rank, traceback.format_exc()))
        raise  # multiprocessing prints the traceback and the exit code becomes 1


class A3CSource:
    """Runs ``agent.config.num_workers`` A3C workers and hands the loop their reports.

    ``next()`` starts the workers on its first call, waits up to ``wait`` seconds for reports and returns them
    (None if none came; the loop then skips ``update``). ``steps`` counts the env steps of the updates reported so
    far. The workers claim segments from a shared counter and stop when it reaches ``total_steps``; the loop, which
    stops on ``steps``, therefore ends only after the last update has been reported, so the final checkpoint holds
    all of the workers' work. A worker that fails or dies makes ``next()`` raise a :class:`UserError` naming it;
    ``close()`` stops and joins every worker.

    The evaluation schedule is therefore not step-exact: the loop evaluates when ``steps`` crosses a multiple of
    the interval, but ``steps`` moves by whole reports (every ``report_every`` seconds per worker) and the workers
    do not pause for an evaluation. An evaluation due at step k runs at the first reported count >= k, and two due
    points crossed by one drain give one evaluation (the final one always runs, at ``total_steps``).

    Args:
        agent: the shared model and optimizer (pickled into each worker; its tensors stay shared).
        env_name, num_envs, sticky_actions: each worker's env(s), made by ``env_fn`` like :func:`make_env`.
        total_steps: the step budget of all workers together.
        seed: worker ``r`` seeds its env with ``seed + r * num_envs`` and torch with ``seed * 1000 + r``.
        wait: seconds ``next()`` waits for a report.
        report_every: seconds between a worker's reports.
    """

    def __init__(self, agent: Agent, env_name: str, total_steps: int, num_envs: int = 1, seed: int = 1,
                 sticky_actions: bool = False, wait: float = 0.25, report_every: float = 0.25,
                 env_fn: Callable[..., EpisodeSignals] = make_env):
        self.agent, self.env_name, self.total_steps = agent, env_name, total_steps
        self.num_envs, self.seed, self.sticky_actions = num_envs, seed, sticky_actions
        self.wait, self.report_every, self.env_fn = wait, report_every, env_fn
        self._claimed = MP.Value("q", 0)  # env steps claimed by the workers, ahead of ``steps`` by their segments
        self._messages = MP.Queue()
        self._stop = MP.Event()
        self.workers: list[Any] = []
        self.steps = 0
        self.episodes = Episodes()
        self._reports: list[WorkerReport] = []
        self._failures: list[WorkerFailure] = []

    @property
    def recent_returns(self) -> list[float]:
        return list(self.episodes.recent_returns)

    def reset(self, seed: int | None = None) -> None:
        """Seed the workers' envs (before they start; a resumed run starts fresh games)."""
        if seed is not None:
            self.seed = seed

    def start(self) -> None:
        for rank in range(self.agent.config.num_workers):
            process = MP.Process(
                target=run_worker, name=f"a3c-worker-{rank}", daemon=True,
                args=(rank, self.agent, self.env_fn, self.env_name, self.num_envs, self.seed, self.sticky_actions,
                      self.total_steps, self._claimed, self._messages, self._stop, self.report_every))
            process.start()
            self.workers.append(process)

    def next(self) -> list[WorkerReport] | None:
        if not self.workers:
            self.start()
        self._drain(self.wait)
        self._check_workers()
        reports, self._reports = self._reports, []
        self.agent.step = self.steps
        return reports or None

    def _drain(self, timeout: float) -> None:
        """Take every message waiting (the first one waited for up to ``timeout`` s)."""
        block = timeout > 0
        while True:
            try:
                message = self._messages.get(timeout=timeout) if block else self._messages.get_nowait()
            except queue_module.Empty:
                return
            block = False
            if isinstance(message, WorkerFailure):
                self._failures.append(message)
                continue
            self.steps += message.steps
            for step, episode_return, length in message.episodes:
                self.episodes.add(step, episode_return, length)
            if message.updates:
                self._reports.append(message)

    def _check_workers(self) -> None:
        """Raise (after stopping every worker) if one failed or died, or if they all stopped short of the budget."""
        dead = [p for p in self.workers if p.exitcode not in (None, 0)]
        if dead and not self._failures:
            self._drain(0.5)  # its last message may still be in the pipe
        if self._failures:
            failure = self._failures[0]
            self.close()
            if failure.user_error is not None:  # raised again as its own class (the loop adds what was kept)
                raise type(failure.user_error)(f"A3C worker {failure.rank}: {failure.user_error}")
            last_line = failure.traceback.strip().splitlines()[-1]
            raise UserError(f"A3C worker {failure.rank} failed: {last_line} (its traceback is printed above)")
        if dead:
            self.close()
            rank, code = self.workers.index(dead[0]), dead[0].exitcode
            how = f"killed by signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
            raise UserError(f"A3C worker {rank} died ({how}) before it could report an error (out of memory?); its "
                            "output, if any, is above")
        if all(p.exitcode == 0 for p in self.workers) and self.steps < self.total_steps:
            self._drain(0)  # a finished worker's messages are all in the pipe by now
            if self.steps < self.total_steps:
                raise UserError(f"the A3C workers stopped after {self.steps} of {self.total_steps} steps")

    def close(self) -> None:
        """Stop every worker and wait for it (forcibly after 10 s). Safe to call more than once."""
        self._stop.set()
        deadline = time.monotonic() + 10.0
        while any(p.is_alive() for p in self.workers) and time.monotonic() < deadline:
            self._drain(0.05)  # a worker exits only once its queued messages are flushed
        for process in self.workers:
            if process.is_alive():
                process.terminate()
            process.join(timeout=5.0)

    def pop_finished(self) -> list[tuple[int, float, int]]:
        return self.episodes.pop_finished()

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, **self.episodes.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = self._claimed.value = state["steps"]
        self.episodes.load_state_dict(state)
