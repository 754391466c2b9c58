"""Sources of batches for the loop, and the clock of a run: collecting experience is the source's job, never the
agent's. An agent declares which source it learns from (``source_kind``) and the storage it needs
(``buffer_spec()``); :func:`make_rl_source` builds the env(s), the storage and the source."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from rlkit.agents.base import Agent
from rlkit.envs import EpisodeSignals, make_env
from rlkit.sources.async_ import A3CSource, Segment, WorkerReport
from rlkit.sources.episodes import Episodes
from rlkit.sources.overlap import OverlappedReplaySource
from rlkit.sources.replay import ReplaySource
from rlkit.sources.rollout import RewardScaler, RolloutSource
from rlkit.sources.selfplay import SelfPlaySource


class Source(Protocol):
    """Everything the loop asks of a source. Two members are optional: ``stop_at`` (set to the run's total by a
    source that steps ahead in a thread) and ``failure()`` (why the source can give no more batches, or None; the
    loop reports it in place of a stop signal, see :class:`rlkit.sources.gradients.GradientSource`)."""

    steps: int
    """Progress in the loop's unit (env steps, or samples)."""
    recent_returns: Sequence[float]
    """Raw returns of the last games played (empty where there are no games): for the progress bar."""

    def next(self) -> Any | None:
        """The next batch for the learner, or None when no update is due yet."""

    def pop_finished(self) -> list[tuple[int, float, int]]:
        """(step, raw return, length) of the games finished since the last call."""

    def reset(self, seed: int | None = None) -> None:
        """Start afresh (new games), e.g. after a resume."""

    def close(self) -> None:
        """Release envs and worker processes; the loop calls it once, however the run ends."""

    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def _replay_source(agent: Agent, env_name: str, num_envs: int, seed: int, sticky_actions: bool, total_steps: int,
                   rank: int, env_fn: Callable[..., EpisodeSignals], twin: Agent | None = None) -> ReplaySource:
    env = env_fn(env_name, num_envs, seed=seed + 100_000 * rank, sticky_actions=sticky_actions)
    if twin is not None:
        return OverlappedReplaySource(env, agent, twin, replay_frame_stack(env), seed=seed)
    return ReplaySource(env, agent, replay_frame_stack(env), seed=seed)


def replay_frame_stack(env: EpisodeSignals) -> int:
    """Atari observations stack 4 frames: replay then stores each frame once (1: observations are stored whole)."""
    return env.single_observation_space.shape[0] if env.resolved.family == "atari" else 1


def _rollout_source(agent: Agent, env_name: str, num_envs: int, seed: int, sticky_actions: bool, total_steps: int,
                    rank: int, env_fn: Callable[..., EpisodeSignals]) -> RolloutSource:
    # Each process under torchrun plays its own games: env seeds apart by rank.
    env = env_fn(env_name, num_envs, seed=seed + 100_000 * rank, sticky_actions=sticky_actions)
    return RolloutSource(env, agent)


def _async_source(agent: Agent, env_name: str, num_envs: int, seed: int, sticky_actions: bool, total_steps: int,
                  rank: int, env_fn: Callable[..., EpisodeSignals]) -> A3CSource:
    # each worker makes its env (env_fn is pickled into it)
    return A3CSource(agent, env_name, total_steps, num_envs, seed, sticky_actions, env_fn=env_fn)


SOURCE_KINDS: dict[str, Callable[..., Source]] = {
    "replay": _replay_source, "rollout": _rollout_source, "async": _async_source,
}
"""``agent.source_kind`` -> how to build that source."""


def make_rl_source(agent: Agent, env_name: str, num_envs: int, seed: int, sticky_actions: bool, total_steps: int,
                   rank: int = 0, env_fn: Callable[..., EpisodeSignals] = make_env,
                   twin: Agent | None = None) -> Source:
    """The source ``agent`` learns from, with its env(s) (seeded by ``seed`` and ``rank``) and its storage.
    ``env_fn`` makes the envs like :func:`~rlkit.envs.make_env` (a partial of it carrying env kwargs and
    wrappers). A ``twin`` (a second agent of the same class and config) makes a replay source act with it in a
    thread during updates (:mod:`rlkit.sources.overlap`)."""
    options = {} if twin is None else {"twin": twin}  # only replay sources take one
    return SOURCE_KINDS[agent.source_kind](agent, env_name, num_envs, seed, sticky_actions, total_steps, rank,
                                           env_fn, **options)


__all__ = ["Source", "make_rl_source", "replay_frame_stack", "SOURCE_KINDS", "Episodes", "ReplaySource", "RolloutSource", "RewardScaler",
           "A3CSource", "Segment", "WorkerReport", "SelfPlaySource"]
