"""REINFORCE (Williams 1992): Monte Carlo policy gradient with reward-to-go and an optional learned baseline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from rlkit.agents.policy_gradient import LossWeights, Normalization, PolicyAgent, PolicyGradientConfig
from rlkit.buffers.rollout import RolloutBatch
from rlkit.config import POSITIVE, Constraint
from rlkit.envs import Family
from rlkit.nets.policies import frozen
from rlkit.optim import make_adam, optimizer_step


@dataclass
class REINFORCEConfig(PolicyGradientConfig, LossWeights, Normalization):
    """REINFORCE hyperparameters. The rollout is cut into whole episodes: steps of an episode still running when
    the rollout ends do not count (their return is not known yet)."""

    num_steps: int = 1000
    """Steps collected per sub-env before each update."""
    learning_rate: float = 1e-3
    """Adam learning rate (policy and baseline)."""
    gae_lambda: float = 1.0
    """Kept at 1: the Monte Carlo return (reward-to-go)."""
    baseline: bool = True
    """Subtract a learned state-value baseline V(s) from the return (fitted by regression on the returns)."""
    anneal_lr: bool = False
    """Decay the learning rate linearly to 0 over the run."""
    max_grad_norm: float = 0.0
    """Clip the global gradient norm to this (0 disables)."""
    adam_eps: float = 1e-5
    """Adam epsilon."""

    CHECKS: ClassVar[dict[str, Constraint]] = {"adam_eps": POSITIVE}


# Env family -> config changes and run defaults (num_envs, total_steps).
PRESETS: dict[Family, dict[str, Any]] = {
    "atari": {"num_envs": 8, "total_steps": 10_000_000},
    "mujoco": {"normalize_obs": True, "num_envs": 4, "total_steps": 1_000_000},
    "other": {"num_envs": 4, "total_steps": 100_000},
}


class REINFORCE(PolicyAgent):
    """``grad J = E[sum_t grad log pi(a_t|s_t) (G_t - b(s_t))]`` with ``G_t`` the discounted reward-to-go."""

    config_class = REINFORCEConfig
    mask_unfinished_episodes = True

    def __init__(self, config: REINFORCEConfig, obs_space, action_space, device="cpu", total_steps=1_000_000,
                 seed=None):
        super().__init__(config, obs_space, action_space, device, total_steps, seed, shared=False,
                         normalize_obs=config.normalize_obs)
        self.optimizer = make_adam(self.net.parameters(), config.learning_rate, self.device, eps=config.adam_eps)

    def policy_step(self, obs, memory=None, episode_starts=None):
        step = super().policy_step(obs)
        # Without a baseline the "values" are 0, so GAE with lambda = 1 gives advantages = returns = G_t.
        return step if self.config.baseline else step._replace(values=torch.zeros_like(step.values))

    def value_of(self, obs, memory=None, episode_starts=None):
        # Without a baseline the critic is never trained: no bootstrap from it at time limits either.
        values = super().value_of(obs)
        return values if self.config.baseline else torch.zeros_like(values)

    def update(self, rollout: RolloutBatch) -> dict[str, float]:
        c = self.config
        lr = self.anneal_learning_rate(self.optimizer)
        weights = rollout.weights  # 0 for steps whose episode had not ended
        count = weights.sum().clamp(min=1.0)
        dist = self.net.distribution(rollout.obs)
        advantages = rollout.advantages
        if c.normalize_advantage:
            mean = (advantages * weights).sum() / count
            std = (((advantages - mean) ** 2 * weights).sum() / count).sqrt()
            advantages = (advantages - mean) / (std + 1e-8)
        policy_loss = -(weights * dist.log_prob(rollout.actions) * advantages).sum() / count
        loss = policy_loss - c.ent_coef * (weights * dist.entropy()).sum() / count
        metrics = {"losses/policy_loss": policy_loss.item(), "charts/learning_rate": lr,
                   "charts/counted_steps": float(count)}
        if c.baseline:
            value_loss = (weights * (self.net.value(rollout.obs) - rollout.returns).pow(2)).sum() / count
            loss = loss + c.vf_coef * value_loss
            metrics["losses/value_loss"] = value_loss.item()
        old_policy = frozen(dist)
        metrics["losses/grad_norm"] = optimizer_step(self.optimizer, loss, self.net.parameters(), c.max_grad_norm)
        self.updates += 1
        metrics["losses/kl"] = self.kl_after_step(old_policy, rollout.obs)
        return metrics
