"""Off-policy RL: an env collector feeding replay, and minibatches sampled from it."""

from __future__ import annotations

from typing import Any

import numpy as np

from rlkit.agents.base import Agent
from rlkit.buffers import Batch
from rlkit.envs import EpisodeSignals
from rlkit.sources.episodes import Episodes


class ReplaySource:
    """Steps a vector env with the agent's behaviour policy into replay, and samples minibatches.

    The replay memory is the one ``agent.buffer_spec()`` asks for; batch size, ``learning_starts``,
    ``train_frequency`` and ``gradient_steps`` come from the agent's config (:class:`rlkit.agents.base.ReplayConfig`).
    ``gradient_steps`` updates are due every ``train_frequency`` env steps (counted over all sub-envs) once
    ``learning_starts`` steps have been taken and replay holds that much experience (after a resume without saved
    replay it refills first).

    Args:
        env: the training env (SAME_STEP autoreset, as made by :func:`rlkit.envs.make_env`).
        agent: acts with ``act(obs, explore=True)``; told of episode starts and of the step.
        frame_stack: frames stacked in an observation (4 for Atari), so replay stores each frame once.
        seed: of replay's sampling.
    """

    def __init__(self, env: EpisodeSignals | None, agent: Agent, frame_stack: int = 1, seed: int | None = None,
                 num_envs: int | None = None):
        self.env, self.agent = env, agent
        num_envs = env.num_envs if num_envs is None else num_envs  # no env: remote actors feed the rings
        self.buffer = agent.buffer_spec().build(num_envs, frame_stack, agent.device, seed)
        c = agent.config
        self.batch_size, self.learning_starts = c.batch_size, c.learning_starts
        self.train_frequency, self.gradient_steps = c.train_frequency, c.gradient_steps
        self._since_training = 0  # env steps since the last training phase
        self.steps = 0
        self.pending_updates = 0.0
        self.episodes = Episodes()
        self.obs: np.ndarray | None = None

    @property
    def recent_returns(self) -> list[float]:
        return list(self.episodes.recent_returns)

    def reset(self, seed: int | None = None) -> None:
        self.obs, _ = self.env.reset(seed=seed)
        self.agent.episode_start(np.ones(self.env.num_envs, dtype=bool))

    def _ready(self) -> bool:
        filled = min(self.learning_starts, self.buffer.slots * self.buffer.num_envs // 2)
        return self.steps >= self.learning_starts and self.buffer.added >= filled and len(self.buffer) >= 1

    def next(self) -> Batch | None:
        """Take one vector step unless an update is already due; return a minibatch if an update is due."""
        # A resume without saved replay keeps its due updates but starts with empty replay: step until it is
        # ready again rather than sample from nothing.
        ready = self._ready()
        if self.pending_updates < 1.0 or not ready:
            self.step()
            ready = self._ready()
        if self.pending_updates >= 1.0 and ready:
            self.pending_updates -= 1.0
            self.agent.step = self.steps
            return self.buffer.sample(self.batch_size)
        return None

    def step(self) -> None:
        """One step of every sub-env into replay."""
        if self.obs is None:
            self.reset()
        self.agent.step = self.steps
        actions = self.agent.act(self.obs, explore=True)
        next_obs, rewards, terminated, truncated, info = self.env.step(actions)
        self.buffer.add(self.obs, actions, rewards, terminated, truncated, info["final_obs"])
        self.obs = next_obs
        self.count_steps(self.env.num_envs)
        self.episodes.record(self.steps, info)
        learner_episode_start = terminated | truncated
        if learner_episode_start.any():
            self.agent.episode_start(learner_episode_start)

    def count_steps(self, n: int) -> None:
        """``n`` more env steps are in replay: the training phases they complete are due."""
        self.steps += n
        if self._ready():
            self._since_training += n
            phases, self._since_training = divmod(self._since_training, self.train_frequency)
            self.pending_updates += phases * self.gradient_steps

    def pop_finished(self) -> list[tuple[int, float, int]]:
        return self.episodes.pop_finished()

    def close(self) -> None:
        self.env.close()

    def save_buffer(self, path: str) -> None:
        """Write replay's contents to ``path`` (.npz), for a resume that continues with the same experience."""
        self.buffer.save(path)

    def load_buffer(self, path: str) -> None:
        self.buffer.load(path)

    def state_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps, **self.episodes.state_dict(), "pending_updates": self.pending_updates,
            "since_training": self._since_training, "buffer_rng": self.buffer.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = state["steps"]
        self.episodes.load_state_dict(state)
        self.pending_updates, self._since_training = state["pending_updates"], state["since_training"]
        self.buffer.rng.bit_generator.state = state["buffer_rng"]
