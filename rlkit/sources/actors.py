"""Distributed actors for replay learners (Ape-X, Horgan et al. 2018): under torchrun, process 0 is the learner, with
the replay buffer and the loop; every other process is an actor that steps its own envs with a recent copy of the
policy and sends what it collected to the learner over ``torch.distributed.rpc``.

The protocol is one call, :func:`deliver`: an actor sends a :class:`Chunk` of steps and gets back a :class:`Reply`
with the run's step count, whether to stop, and the policy's newest weights if they changed since it last had them.
The learner publishes its acting weights every ``sync_updates`` updates.

Frames travel once, as replay stores them: a chunk carries its first observations whole, then per step only the
newest frame of each next observation; a next observation that is not the last one shifted by a frame, and the first
observation of a new game, travel whole.

The learner takes chunks only as fast as its update ratio asks (``gradient_steps`` every ``train_frequency`` steps,
as in one process); an actor whose chunk is not wanted yet waits. More actors raise throughput up to the learner's
speed and never change the ratio of updates to data. With more than one actor the order of arrival, and so the run,
is not reproducible.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from rlkit.agents.base import Agent
from rlkit.envs import EpisodeSignals
from rlkit.sources.replay import ReplaySource

LEARNER = "learner"
"""The rpc name of process 0."""
SILENCE_LIMIT_S = 600.0
"""The learner gives up when no actor has sent anything for this long."""


def actor_name(rank: int) -> str:
    return LEARNER if rank == 0 else f"actor{rank}"


@dataclass
class Chunk:
    """``T`` steps of an actor's ``E`` sub-envs, frames once (see the module's docstring)."""

    first_obs: np.ndarray
    """(E, *obs_shape): the observations the first step acted on."""
    actions: list[np.ndarray] = field(default_factory=list)
    rewards: list[np.ndarray] = field(default_factory=list)
    terminated: list[np.ndarray] = field(default_factory=list)
    truncated: list[np.ndarray] = field(default_factory=list)
    frames: list[np.ndarray] = field(default_factory=list)
    """Per step (E, *frame_shape): the newest frame of each true next observation (the last one of a finished game)."""
    whole_next: list[tuple[int, int, np.ndarray]] = field(default_factory=list)
    """(step, sub-env, observation): true next observations that are not the last one shifted by a frame."""
    restarts: list[tuple[int, int, np.ndarray]] = field(default_factory=list)
    """(step, sub-env, observation): the first observation of a new game, which the next step acts on."""
    episodes: list[tuple[int, float, int]] = field(default_factory=list)
    """(step, raw return, length) of the games that ended, at the step they ended."""

    @property
    def num_envs(self) -> int:
        return len(self.first_obs)

    @property
    def steps(self) -> int:
        return len(self.actions) * self.num_envs


def _newest(obs: np.ndarray, frame_stack: int) -> np.ndarray:
    """The newest frame of each observation in a batch."""
    return obs[:, -1] if frame_stack > 1 else obs


def _shifted(obs: np.ndarray, frames: np.ndarray, frame_stack: int) -> np.ndarray:
    """Each stack in ``obs`` with its oldest frame dropped and ``frames`` appended."""
    if frame_stack == 1:
        return frames.copy()
    return np.concatenate([obs[:, 1:], frames[:, None]], axis=1)


class ChunkWriter:
    """Builds a :class:`Chunk` from an actor's env steps."""

    def __init__(self, obs: np.ndarray, frame_stack: int):
        self.chunk = Chunk(first_obs=np.array(obs, copy=True))
        self.frame_stack = frame_stack
        self.obs = self.chunk.first_obs

    def add(self, actions: np.ndarray, rewards: np.ndarray, terminated: np.ndarray, truncated: np.ndarray,
            true_next: np.ndarray, next_obs: np.ndarray, info: dict[str, Any]) -> None:
        c, t = self.chunk, len(self.chunk.actions)
        c.actions.append(np.asarray(actions))
        c.rewards.append(np.asarray(rewards, dtype=np.float32))
        c.terminated.append(np.asarray(terminated, dtype=bool))
        c.truncated.append(np.asarray(truncated, dtype=bool))
        frames = np.array(_newest(true_next, self.frame_stack), copy=True)
        c.frames.append(frames)
        shifted = _shifted(self.obs, frames, self.frame_stack)
        for e in range(c.num_envs):
            if not np.array_equal(shifted[e], true_next[e]):
                c.whole_next.append((t, e, np.array(true_next[e], copy=True)))
            if not np.array_equal(next_obs[e], true_next[e]):
                c.restarts.append((t, e, np.array(next_obs[e], copy=True)))
        for e in np.flatnonzero(info["episode_done"]):
            c.episodes.append((t, float(info["episode_return"][e]), int(info["episode_length"][e])))
        self.obs = np.array(next_obs, copy=True)


def replay_steps(chunk: Chunk, frame_stack: int):
    """The chunk's steps as replay's ``add`` takes them: (obs, actions, rewards, terminated, truncated, true next
    obs), each with a leading sub-env axis."""
    obs = chunk.first_obs.copy()
    whole = {(t, e): x for t, e, x in chunk.whole_next}
    restarts = {(t, e): x for t, e, x in chunk.restarts}
    for t, frames in enumerate(chunk.frames):
        true_next = _shifted(obs, frames, frame_stack)
        for e in range(chunk.num_envs):
            if (t, e) in whole:
                true_next[e] = whole[t, e]
        yield obs, chunk.actions[t], chunk.rewards[t], chunk.terminated[t], chunk.truncated[t], true_next
        obs = true_next.copy()
        for e in range(chunk.num_envs):
            if (t, e) in restarts:
                obs[e] = restarts[t, e]


@dataclass
class Reply:
    steps: int
    """The run's env steps so far (all actors'): the actor's schedules (warm-up) read it."""
    stop: bool
    version: int
    """The version of the weights the actor now has (unchanged when ``weights`` is None)."""
    weights: dict[str, Any] | None


def _cpu_copy(state: Any) -> Any:
    if isinstance(state, torch.Tensor):
        return state.detach().to("cpu", copy=True)
    if isinstance(state, dict):
        return {key: _cpu_copy(value) for key, value in state.items()}
    return state


class ActorReplaySource(ReplaySource):
    """The learner's source: replay fed by the actors' chunks instead of an env of its own.

    Each of ``actors`` actors with ``envs_per_actor`` sub-envs writes its own rings of replay. Everything else (the
    update ratio, warm-up, the step count, the state kept in checkpoints) is :class:`ReplaySource`'s.
    """

    def __init__(self, agent: Agent, actors: int, envs_per_actor: int, frame_stack: int, seed: int | None,
                 sync_updates: int):
        super().__init__(None, agent, frame_stack, seed, num_envs=actors * envs_per_actor)
        self.frame_stack, self.envs_per_actor, self.sync_updates = frame_stack, envs_per_actor, sync_updates
        self.chunks: deque[tuple[int, Chunk]] = deque()
        self.max_queued = actors  # about one chunk each waiting: actors never run far ahead of the learner
        self.changed = threading.Condition()
        self.stopped = False
        self.batches = 0  # minibatches handed out: the learner's updates
        # version 1 at the start, actors at 0: each gets the learner's weights (a resumed run's too) at once
        self.version, self.published_at, self.weights = 1, 0, _cpu_copy(agent.acting_state())
        self.delivered = [0] * actors  # chunks received from each actor
        self.weights_sent = [0] * actors

    def reset(self, seed: int | None = None) -> None:
        """The actors play the games: nothing to reset here."""

    def next(self):
        batch = super().next()
        self.batches += batch is not None
        return batch

    def step(self) -> None:
        """Put the oldest waiting chunk into replay (waiting for one if none has come)."""
        if self.batches - self.published_at >= self.sync_updates:
            weights = _cpu_copy(self.agent.acting_state())
            with self.changed:
                self.version, self.published_at, self.weights = self.version + 1, self.batches, weights
        with self.changed:
            waited = time.monotonic()
            while not self.chunks:
                if time.monotonic() - waited > SILENCE_LIMIT_S:
                    raise RuntimeError(f"no actor has sent transitions for {SILENCE_LIMIT_S:.0f} s: an actor "
                                       "process died or hangs (see its output above)")
                self.changed.wait(timeout=1.0)
            index, chunk = self.chunks.popleft()
            self.changed.notify_all()
        rings = np.arange(index * self.envs_per_actor, (index + 1) * self.envs_per_actor)
        ended = {}
        for step, episode_return, length in chunk.episodes:
            ended.setdefault(step, []).append((episode_return, length))
        for t, transition in enumerate(replay_steps(chunk, self.frame_stack)):
            self.buffer.add(*transition, rings=rings)
            self.count_steps(chunk.num_envs)
            for episode_return, length in ended.get(t, ()):
                self.episodes.add(self.steps, episode_return, length)

    def receive(self, index: int, chunk: Chunk, version: int) -> Reply:
        """An actor's chunk (on an rpc thread): queue it, waiting while the learner has enough queued."""
        with self.changed:
            while len(self.chunks) >= self.max_queued and not self.stopped:
                self.changed.wait()
            if self.stopped:
                return Reply(self.steps, True, version, None)
            self.chunks.append((index, chunk))
            self.delivered[index] += 1
            self.changed.notify_all()
            if version == self.version:
                return Reply(self.steps, False, version, None)
            self.weights_sent[index] += 1
            return Reply(self.steps, False, self.version, self.weights)

    def close(self) -> None:
        """Answer every actor's next call with stop."""
        with self.changed:
            self.stopped = True
            self.changed.notify_all()


_learner_source: ActorReplaySource | None = None
"""The learner process's source, which :func:`deliver` hands chunks to."""
_served = threading.Event()


def serve(source: ActorReplaySource) -> None:
    global _learner_source
    _learner_source = source
    _served.set()


def deliver(index: int, chunk: Chunk, version: int) -> Reply:
    """Run on the learner by an actor's rpc call; an actor may call before the learner has built its source."""
    if not _served.wait(timeout=SILENCE_LIMIT_S):
        raise RuntimeError(f"the learner built no replay for its actors within {SILENCE_LIMIT_S:.0f} s")
    return _learner_source.receive(index, chunk, version)


def _send_to_learner(index: int, chunk: Chunk, version: int) -> Reply:
    from torch.distributed import rpc

    # no timeout: the learner holds chunks back while it evaluates or saves
    return rpc.rpc_sync(LEARNER, deliver, args=(index, chunk, version), timeout=0)


class Actor:
    """One actor process: plays its envs with the newest weights it has and sends chunks of ``chunk_steps`` vector
    steps to the learner until the learner says stop. ``index`` of ``count`` picks its exploration
    (:meth:`rlkit.agents.base.Agent.use_actor_exploration`)."""

    def __init__(self, agent: Agent, env: EpisodeSignals, frame_stack: int, index: int, count: int, chunk_steps: int,
                 seed: int | None = None, send: Callable[[int, Chunk, int], Reply] | None = None):
        self.agent, self.env, self.frame_stack = agent, env, frame_stack
        self.index, self.chunk_steps, self.seed = index, chunk_steps, seed
        self.send = send or _send_to_learner  # tests put a learner in the same process
        agent.use_actor_exploration(index, count)
        self.version = 0  # older than any the learner has: its first reply brings weights
        self.chunks_sent = 0

    def run(self) -> None:
        obs, _ = self.env.reset(seed=self.seed)
        self.agent.episode_start(np.ones(self.env.num_envs, dtype=bool))
        steps = 0
        try:
            while True:
                writer = ChunkWriter(obs, self.frame_stack)
                for _ in range(self.chunk_steps):
                    self.agent.step = steps
                    actions = self.agent.act(obs, explore=True)
                    next_obs, rewards, terminated, truncated, info = self.env.step(actions)
                    writer.add(actions, rewards, terminated, truncated, info["final_obs"], next_obs, info)
                    obs, steps = next_obs, steps + self.env.num_envs
                    if (ended := terminated | truncated).any():
                        self.agent.episode_start(ended)
                reply = self.send(self.index, writer.chunk, self.version)
                self.chunks_sent += 1
                if reply.stop:
                    return
                steps = reply.steps
                if reply.weights is not None:
                    self.agent.load_acting_state(reply.weights)
                    self.version = reply.version
        finally:
            self.env.close()
