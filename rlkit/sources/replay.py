"""Sources of batches for the loop. Collecting experience is the source's job, never the agent's."""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import torch

from rlkit.agents.base import Agent
from rlkit.agents.policy_gradient import PolicyAgent
from rlkit.buffers import Batch, ReplayBuffer
from rlkit.buffers.rollout import RolloutBatch, RolloutBuffer
from rlkit.distributed import sum_over_processes
from rlkit.envs import EpisodeSignals
from rlkit.nets import RunningMeanStd


class ReplaySource:
    """Off-policy RL: steps a vector env with the agent's behaviour policy into replay, and samples minibatches.

    ``gradient_steps`` updates are due every ``train_frequency`` env steps (counted over all sub-envs) once
    ``learning_starts`` steps have been taken and replay holds that much experience (after a resume without saved replay it refills first).

    Args:
        env: the training env (SAME_STEP autoreset, as made by :func:`rlkit.envs.make_env`).
        agent: acts with ``act(obs, explore=True)``; told of episode starts.
        buffer: replay memory to fill and sample.
        batch_size, learning_starts, train_frequency, gradient_steps: as in the agent's config; updates come in
            phases of ``gradient_steps`` every ``train_frequency`` env steps.
    """

    def __init__(
        self,
        env: EpisodeSignals,
        agent: Agent,
        buffer: ReplayBuffer,
        batch_size: int,
        learning_starts: int,
        train_frequency: int,
        gradient_steps: int = 1,
    ):
        self.env, self.agent, self.buffer = env, agent, buffer
        self.batch_size, self.learning_starts = batch_size, learning_starts
        self.train_frequency, self.gradient_steps = train_frequency, gradient_steps
        self._since_training = 0  # env steps since the last training phase
        self.steps = 0
        self.episodes = 0
        self.pending_updates = 0.0
        self.recent_returns: deque[float] = deque(maxlen=20)
        self.finished: list[tuple[int, float, int]] = []  # (step, raw return, length) since the last pop
        self.obs: np.ndarray | None = None

    def reset(self, seed: int | None = None) -> None:
        self.obs, _ = self.env.reset(seed=seed)
        self.agent.episode_start(np.ones(self.env.num_envs, dtype=bool))

    def _ready(self) -> bool:
        filled = min(self.learning_starts, self.buffer.slots * self.buffer.num_envs // 2)
        return self.steps >= self.learning_starts and self.buffer.added >= filled and len(self.buffer) >= 1

    def next(self) -> Batch | None:
        """Take one vector step unless an update is already due; return a minibatch if an update is due."""
        if self.pending_updates < 1.0:
            self.step()
        if self.pending_updates >= 1.0:
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
        self.steps += self.env.num_envs
        if self._ready():
            self._since_training += self.env.num_envs
            phases, self._since_training = divmod(self._since_training, self.train_frequency)
            self.pending_updates += phases * self.gradient_steps
        for i in np.flatnonzero(info["episode_done"]):
            self.episodes += 1
            self.recent_returns.append(float(info["episode_return"][i]))
            self.finished.append((self.steps, float(info["episode_return"][i]), int(info["episode_length"][i])))
        learner_episode_start = terminated | truncated
        if learner_episode_start.any():
            self.agent.episode_start(learner_episode_start)

    def pop_finished(self) -> list[tuple[int, float, int]]:
        """Games finished since the last call: (step, raw return, length)."""
        finished, self.finished = self.finished, []
        return finished

    def state_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps, "episodes": self.episodes, "pending_updates": self.pending_updates,
            "since_training": self._since_training,
            "recent_returns": list(self.recent_returns), "buffer_rng": self.buffer.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps, self.episodes = state["steps"], state["episodes"]
        self.pending_updates, self._since_training = state["pending_updates"], state["since_training"]
        self.recent_returns.extend(state["recent_returns"])
        self.buffer.rng.bit_generator.state = state["buffer_rng"]


class RewardScaler:
    """Divide rewards by the running std of the discounted return (as gymnasium's NormalizeReward and SB3's
    VecNormalize do), so value targets keep a similar scale across tasks. Training signal only."""

    def __init__(self, num_envs: int, gamma: float, clip: float = 10.0):
        self.gamma, self.clip = gamma, clip
        self.returns = np.zeros(num_envs)
        self.stats = RunningMeanStd((), all_reduce=sum_over_processes())

    def __call__(self, rewards: np.ndarray, done: np.ndarray) -> np.ndarray:
        self.returns = self.returns * self.gamma + rewards
        self.stats.update(torch.as_tensor(self.returns))
        self.returns[done] = 0.0
        scale = float(torch.sqrt(self.stats.var + self.stats.epsilon))
        return np.clip(rewards / scale, -self.clip, self.clip)

    def state_dict(self) -> dict[str, Any]:
        return {"returns": torch.as_tensor(self.returns), "stats": self.stats.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.returns = state["returns"].numpy().copy()
        self.stats.load_state_dict(state["stats"])


class RolloutSource:
    """On-policy RL: each ``next()`` collects ``num_steps`` steps of every sub-env with the current policy and
    returns the finished rollout (advantages and returns computed), flattened."""

    def __init__(self, env: EpisodeSignals, agent: PolicyAgent, buffer: RolloutBuffer):
        self.env, self.agent, self.buffer = env, agent, buffer
        config = agent.config
        self.reward_scaler = RewardScaler(env.num_envs, config.gamma) if config.normalize_reward else None
        self.steps = 0
        self.episodes = 0
        self.recent_returns: deque[float] = deque(maxlen=20)
        self.finished: list[tuple[int, float, int]] = []
        self.obs: np.ndarray | None = None

    def reset(self, seed: int | None = None) -> None:
        self.obs, _ = self.env.reset(seed=seed)

    def next(self) -> RolloutBatch:
        if self.obs is None:
            self.reset()
        config, buffer = self.agent.config, self.buffer
        buffer.reset()
        while not buffer.full:
            self.agent.step = self.steps
            step = self.agent.policy_step(self.obs)
            next_obs, rewards, terminated, truncated, info = self.env.step(step.env_actions)
            final_values = None
            if truncated.any():  # a time limit cut the game: bootstrap from the true last observation
                final_values = torch.zeros(self.env.num_envs, device=buffer.device)
                final_values[torch.as_tensor(truncated)] = self.agent.value_of(info["final_obs"][truncated])
            if self.reward_scaler is not None:
                rewards = self.reward_scaler(rewards, terminated | truncated)
            buffer.add(step.obs, step.actions, step.log_probs, step.values, rewards, terminated, truncated,
                       final_values)
            self.obs = next_obs
            self.steps += self.env.num_envs
            for i in np.flatnonzero(info["episode_done"]):
                self.episodes += 1
                self.recent_returns.append(float(info["episode_return"][i]))
                self.finished.append((self.steps, float(info["episode_return"][i]), int(info["episode_length"][i])))
        buffer.finish(self.agent.value_of(self.obs), config.gamma, config.gae_lambda,
                      mask_unfinished=self.agent.mask_unfinished_episodes)
        self.agent.step = self.steps
        return buffer.flat()

    def pop_finished(self) -> list[tuple[int, float, int]]:
        finished, self.finished = self.finished, []
        return finished

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "episodes": self.episodes, "recent_returns": list(self.recent_returns),
                "reward_scaler": self.reward_scaler.state_dict() if self.reward_scaler is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps, self.episodes = state["steps"], state["episodes"]
        self.recent_returns.extend(state["recent_returns"])
        if self.reward_scaler is not None:
            self.reward_scaler.load_state_dict(state["reward_scaler"])
