"""Proximal policy optimization (Schulman et al. 2017), clipped surrogate objective, as in CleanRL and SB3."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from rlkit.distributed import average_metrics
from rlkit.agents.policy_gradient import (RECURRENT_HIDDEN, LossWeights, Normalization, PolicyAgent,
                                          PolicyGradientConfig, Recurrence)
from rlkit.buffers.rollout import RolloutBatch, minibatches
from rlkit.config import COUNT, NON_NEGATIVE, POSITIVE, Constraint
from rlkit.envs import Family
from rlkit.optim import make_adam, optimizer_step


@dataclass
class PPOConfig(PolicyGradientConfig, LossWeights, Normalization, Recurrence):
    """PPO hyperparameters. Defaults are the MuJoCo values of Schulman et al. (2017) as in CleanRL's ppo_continuous."""

    num_steps: int = 2048
    """Steps collected per sub-env before each update."""
    update_epochs: int = 10
    """Passes over the rollout per update."""
    num_minibatches: int = 32
    """Minibatches per pass."""
    clip_coef: float = 0.2
    """Surrogate clipping: the ratio pi/pi_old is kept within 1 +- clip_coef."""
    clip_vloss: bool = True
    """Clip the value update around the old values by clip_coef too."""
    target_kl: float = 0.0
    """Stop the epochs early once the approximate KL exceeds this (0 disables)."""
    normalize_obs: bool = True
    """Standardize observations with running statistics (saved in the checkpoint, used in evaluation)."""
    normalize_reward: bool = True
    """Scale training rewards by the running std of the discounted return (evaluation reports raw rewards)."""
    adam_eps: float = 1e-5
    """Adam epsilon."""

    CHECKS: ClassVar[dict[str, Constraint]] = {
        "update_epochs": COUNT, "num_minibatches": COUNT, "clip_coef": POSITIVE, "target_kl": NON_NEGATIVE,
        "adam_eps": POSITIVE,
    }


# Env family -> config changes and run defaults (num_envs, total_steps).
PRESETS: dict[Family, dict[str, Any]] = {
    # CleanRL's ppo_atari.
    "atari": {**RECURRENT_HIDDEN["atari"],
              "num_steps": 128, "update_epochs": 4, "num_minibatches": 4, "learning_rate": 2.5e-4, "clip_coef": 0.1,
              "ent_coef": 0.01, "normalize_obs": False, "normalize_reward": False,
              "num_envs": 8, "total_steps": 10_000_000},
    "mujoco": {**RECURRENT_HIDDEN["other"],
               "num_envs": 1, "total_steps": 1_000_000},  # the config's defaults
    # Envs without a file of their own in rlkit/hyperparams/ppo.yml (your own, toy text): rl-baselines3-zoo's
    # MountainCar-v0 set (16 envs x 16 steps, 4 epochs of 4 minibatches, Adam 3e-4, GAE 0.98, observations and
    # rewards normalized). Chosen across the family at a short budget, where CartPole's values (the default
    # before) did not learn MountainCar and were behind it on CartPole and Acrobot (RESULTS.md, 2026-12-02).
    "other": {**RECURRENT_HIDDEN["other"],
              "num_steps": 16, "update_epochs": 4, "num_minibatches": 4, "learning_rate": 3e-4, "anneal_lr": False,
              "gamma": 0.99, "gae_lambda": 0.98, "clip_vloss": False, "normalize_obs": True, "normalize_reward": True,
              "num_envs": 16, "total_steps": 100_000},
}


class PPO(PolicyAgent):
    """Clipped-surrogate PPO with GAE, value clipping, advantage normalization and learning-rate annealing."""

    config_class = PPOConfig
    data_parallel = True

    def __init__(self, config: PPOConfig, obs_space, action_space, device="cpu", total_steps=1_000_000, seed=None):
        super().__init__(config, obs_space, action_space, device, total_steps, seed,
                         normalize_obs=config.normalize_obs)
        self.optimizer = make_adam(self.net.parameters(), config.learning_rate, self.device, eps=config.adam_eps)

    def update(self, rollout: RolloutBatch) -> dict[str, float]:
        c = self.config
        lr = self.anneal_learning_rate(self.optimizer)
        minibatch_size = max(1, rollout.obs.shape[0] // c.num_minibatches)  # a recurrent policy's: whole sequences
        params = list(self.net.parameters())  # once: walking the modules for every minibatch adds ~4% on CartPole
        stats: dict[str, list[float]] = {"policy_loss": [], "value_loss": [], "entropy": [], "approx_kl": [],
                                         "clipfrac": []}
        for _ in range(c.update_epochs):
            for mb in minibatches(rollout, minibatch_size, self.generator):
                dist, values = self.outputs(mb)
                log_prob = dist.log_prob(mb.actions)
                log_ratio = log_prob - mb.log_probs
                ratio = log_ratio.exp()
                advantages = mb.advantages
                if c.normalize_advantage and len(advantages) > 1:
                    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

                policy_loss = self.clipped_surrogate_loss(ratio, advantages, c.clip_coef)
                value_loss = self.value_loss(values, mb.values, mb.returns)
                entropy = dist.entropy().mean()
                loss = policy_loss - c.ent_coef * entropy + c.vf_coef * value_loss
                optimizer_step(self.optimizer, loss, params, c.max_grad_norm)

                with torch.no_grad():
                    stats["approx_kl"].append(float(((ratio - 1) - log_ratio).mean()))  # Schulman's k3 estimator
                    stats["clipfrac"].append(float(((ratio - 1).abs() > c.clip_coef).float().mean()))
                stats["policy_loss"].append(policy_loss.item())
                stats["value_loss"].append(value_loss.item())
                stats["entropy"].append(entropy.item())
            # Under torchrun every process must take the same decision: the KL averaged over processes.
            if c.target_kl > 0 and average_metrics({"kl": stats["approx_kl"][-1]})["kl"] > c.target_kl:
                break
        self.updates += 1
        metrics = {f"losses/{name}": sum(v) / len(v) for name, v in stats.items()}
        metrics["losses/explained_variance"] = self.explained_variance(rollout.values, rollout.returns)
        metrics["charts/learning_rate"] = lr
        return metrics

    @staticmethod
    def clipped_surrogate_loss(ratio: torch.Tensor, advantages: torch.Tensor, clip_coef: float) -> torch.Tensor:
        """``-E[min(r A, clip(r, 1-eps, 1+eps) A)]``: no incentive to move the ratio outside [1-eps, 1+eps]."""
        unclipped = ratio * advantages
        clipped = ratio.clamp(1 - clip_coef, 1 + clip_coef) * advantages
        return -torch.min(unclipped, clipped).mean()

    def value_loss(self, values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor) -> torch.Tensor:
        """``0.5 E[(V - R)^2]``, or with clip_vloss the larger of that and the error of V clipped near V_old."""
        loss = (values - returns).pow(2)
        if self.config.clip_vloss:
            clipped = old_values + (values - old_values).clamp(-self.config.clip_coef, self.config.clip_coef)
            loss = torch.max(loss, (clipped - returns).pow(2))
        return 0.5 * loss.mean()
