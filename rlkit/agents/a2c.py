"""Synchronous advantage actor-critic (Mnih et al. 2016, the synchronous A2C of OpenAI baselines) with GAE."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from rlkit.agents.policy_gradient import (RECURRENT_HIDDEN, LossWeights, Normalization, PolicyAgent,
                                          PolicyGradientConfig, Recurrence)
from rlkit.buffers.rollout import RolloutBatch
from rlkit.config import POSITIVE, Constraint, OneOf
from rlkit.envs import Family
from rlkit.nets.policies import frozen
from rlkit.optim import make_adam, optimizer_step


@dataclass
class A2CConfig(PolicyGradientConfig, LossWeights, Normalization, Recurrence):
    """A2C hyperparameters. Defaults are OpenAI baselines' / SB3's: RMSprop 7e-4, 5-step segments, clip 0.5."""

    num_steps: int = 5
    """Steps collected per sub-env before each update (short segments)."""
    learning_rate: float = 7e-4
    """Optimizer learning rate."""
    gae_lambda: float = 1.0
    """GAE lambda (1: plain n-step returns over the segment)."""
    ent_coef: float = 0.01
    """Entropy bonus weight."""
    normalize_advantage: bool = False
    """Standardize advantages over the rollout."""
    optimizer: str = "rmsprop"
    """rmsprop (alpha 0.99, eps 1e-5, as in the paper's implementation) or adam."""
    anneal_lr: bool = False
    """Decay the learning rate linearly to 0 over the run."""
    adam_eps: float = 1e-5
    """Adam epsilon (with --optimizer adam)."""

    CHECKS: ClassVar[dict[str, Constraint]] = {"optimizer": OneOf(("rmsprop", "adam")), "adam_eps": POSITIVE}


# Env family -> config changes and run defaults (num_envs, total_steps).
PRESETS: dict[Family, dict[str, Any]] = {
    "atari": {**RECURRENT_HIDDEN["atari"],
              "num_envs": 16, "total_steps": 10_000_000},  # the config's defaults
    # Vector observations: Adam 1e-3, no entropy bonus.
    "mujoco": {**RECURRENT_HIDDEN["other"],
               "learning_rate": 1e-3, "optimizer": "adam", "ent_coef": 0.0, "normalize_obs": True,
               "num_envs": 8, "total_steps": 1_000_000},
    # Envs without a file of their own in rlkit/hyperparams/a2c.yml (your own, toy text): rl-baselines3-zoo's
    # Acrobot/MountainCar set (16 envs x 5 steps, RMSprop 7e-4, observations and rewards normalized). Chosen across
    # the family at a short budget, where the Adam 1e-3 set (the default before) was behind it on every env
    # (RESULTS.md, 2026-12-02).
    "other": {**RECURRENT_HIDDEN["other"],
              "learning_rate": 7e-4, "optimizer": "rmsprop", "ent_coef": 0.0, "normalize_obs": True,
              "normalize_reward": True, "num_envs": 16, "total_steps": 100_000},
}


class A2C(PolicyAgent):
    """One gradient step per rollout on policy loss, value loss and entropy."""

    config_class = A2CConfig
    data_parallel = True

    def __init__(self, config: A2CConfig, obs_space, action_space, device="cpu", total_steps=1_000_000, seed=None):
        super().__init__(config, obs_space, action_space, device, total_steps, seed,
                         normalize_obs=config.normalize_obs)
        if config.optimizer == "rmsprop":
            self.optimizer = torch.optim.RMSprop(self.net.parameters(), lr=config.learning_rate, alpha=0.99, eps=1e-5)
        elif config.optimizer == "adam":
            self.optimizer = make_adam(self.net.parameters(), config.learning_rate, self.device, eps=config.adam_eps)
        else:
            raise ValueError(f"unknown optimizer {config.optimizer!r}: use rmsprop or adam")

    def update(self, rollout: RolloutBatch) -> dict[str, float]:
        c = self.config
        lr = self.anneal_learning_rate(self.optimizer)
        dist, values = self.outputs(rollout)  # a recurrent policy: each sub-env's rollout as one sequence
        log_prob = dist.log_prob(rollout.actions)
        advantages = rollout.advantages
        if c.normalize_advantage:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        policy_loss = -(advantages * log_prob).mean()
        value_loss = (rollout.returns - values).pow(2).mean()
        entropy = dist.entropy().mean()
        loss = policy_loss + c.vf_coef * value_loss - c.ent_coef * entropy
        old_policy = frozen(dist)
        grad_norm = optimizer_step(self.optimizer, loss, self.net.parameters(), c.max_grad_norm)
        self.updates += 1
        return {"losses/policy_loss": policy_loss.item(), "losses/value_loss": value_loss.item(),
                "losses/entropy": entropy.item(), "losses/grad_norm": grad_norm, "charts/learning_rate": lr,
                "losses/explained_variance": self.explained_variance(rollout.values, rollout.returns),
                "losses/kl": self.kl_after_step(old_policy, rollout)}
