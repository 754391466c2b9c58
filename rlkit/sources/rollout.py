"""On-policy RL: finished rollouts of the current policy, with advantages."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rlkit.agents.policy_gradient import PolicyAgent
from rlkit.buffers.rollout import RolloutBatch
from rlkit.distributed import sum_over_processes
from rlkit.envs import EpisodeSignals
from rlkit.nets import RunningMeanStd
from rlkit.sources.episodes import Episodes


class RewardScaler:
    """Divide rewards by the running std of the discounted return (as gymnasium's NormalizeReward and SB3's
    VecNormalize do), so value targets keep a similar scale across tasks. Training signal only."""

    def __init__(self, num_envs: int, gamma: float, clip: float = 10.0):
        self.gamma, self.clip = gamma, clip
        self.returns = np.zeros(num_envs)
        self.stats = RunningMeanStd((), all_reduce=sum_over_processes())

    def __call__(self, rewards: np.ndarray, done: np.ndarray) -> np.ndarray:
        self.returns = self.returns * self.gamma + rewards
        self.stats.update(torch.from_numpy(self.returns))
        self.returns[done] = 0.0
        scale = float(torch.sqrt(self.stats.var + self.stats.epsilon))  # torch's sqrt: math.sqrt can differ by an ulp
        return np.minimum(np.maximum(rewards / scale, -self.clip), self.clip)  # np.clip without its wrappers

    def state_dict(self) -> dict[str, Any]:
        return {"returns": torch.as_tensor(self.returns), "stats": self.stats.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.returns = state["returns"].numpy().copy()
        self.stats.load_state_dict(state["stats"])


class RolloutSource:
    """Each ``next()`` collects ``num_steps`` steps of every sub-env with the current policy and returns the
    finished rollout (advantages and returns computed), flattened. The storage is what ``agent.buffer_spec()``
    asks for."""

    def __init__(self, env: EpisodeSignals, agent: PolicyAgent):
        self.env, self.agent = env, agent
        self.buffer = agent.buffer_spec().build(env.num_envs)
        config = agent.config
        self.reward_scaler = RewardScaler(env.num_envs, config.gamma) if config.normalize_reward else None
        self.steps = 0
        self.episodes = Episodes()
        self.obs: np.ndarray | None = None
        self.memory: torch.Tensor | None = None  # a recurrent policy's, after the last step
        self.episode_starts = np.ones(env.num_envs, dtype=bool)  # the sub-envs whose game begins with self.obs

    @property
    def recent_returns(self) -> list[float]:
        return list(self.episodes.recent_returns)

    def reset(self, seed: int | None = None) -> None:
        self.obs, _ = self.env.reset(seed=seed)
        self.memory, self.episode_starts[:] = self.agent.initial_memory(self.env.num_envs), True
        if self.reward_scaler is not None:  # new games: their discounted returns start at 0 (the statistics stay)
            self.reward_scaler.returns[:] = 0.0

    def next(self) -> RolloutBatch:
        if self.obs is None:
            self.reset()
        config, buffer = self.agent.config, self.buffer
        buffer.reset()
        while not buffer.full:
            self.agent.step = self.steps
            step = self.agent.policy_step(self.obs, self.memory, self.episode_starts)
            next_obs, rewards, terminated, truncated, info = self.env.step(step.env_actions)
            final_values = None
            if truncated.any():  # a time limit cut the game: bootstrap from the true last observation
                final_values = torch.zeros(self.env.num_envs, device=buffer.device)
                cut = torch.as_tensor(truncated)
                # a recurrent critic reads it with the memory of the game it ends
                memory = None if step.memory is None else step.memory[:, :, cut.to(step.memory.device)]
                final_values[cut] = self.agent.value_of(info["final_obs"][truncated], memory)
            if self.reward_scaler is not None:
                rewards = self.reward_scaler(rewards, terminated | truncated)
            buffer.add(step.obs, step.actions, step.log_probs, step.values, rewards, terminated, truncated,
                       final_values, self.memory, self.episode_starts)
            self.obs, self.memory, self.episode_starts = next_obs, step.memory, terminated | truncated
            self.steps += self.env.num_envs
            self.episodes.record(self.steps, info)
        buffer.finish(self.agent.value_of(self.obs, self.memory, self.episode_starts), config.gamma, config.gae_lambda,
                      mask_unfinished=self.agent.mask_unfinished_episodes)
        self.agent.step = self.steps
        return buffer.flat()

    def pop_finished(self) -> list[tuple[int, float, int]]:
        return self.episodes.pop_finished()

    def close(self) -> None:
        self.env.close()

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, **self.episodes.state_dict(),
                "reward_scaler": self.reward_scaler.state_dict() if self.reward_scaler is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = state["steps"]
        self.episodes.load_state_dict(state)
        if self.reward_scaler is not None:
            self.reward_scaler.load_state_dict(state["reward_scaler"])
