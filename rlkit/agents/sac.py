"""Soft actor-critic (Haarnoja et al. 2018): maximum-entropy RL with twin critics, a squashed Gaussian policy
trained by reparameterization, and automatic tuning of the temperature alpha toward a target entropy."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch

from rlkit.agents.base import Agent, ReplayConfig
from rlkit.agents.ddpg import check_bounded_actions, continuous_replay, warm_up_actions
from rlkit.buffers import Batch, ReplaySpec
from rlkit.config import COUNT, DISCOUNT, FINITE, POSITIVE, Constraint
from rlkit.envs import Family
from rlkit.nets.continuous import QEnsemble, SquashedGaussianActor
from rlkit.optim import make_adam, optimizer_step, polyak_update


@dataclass
class SACConfig(ReplayConfig):
    """SAC hyperparameters. Defaults are the paper's (v2) as in CleanRL: policy Adam 3e-4, critics 1e-3, batch 256,
    tau 0.005, 5k random steps first, automatic temperature with target entropy -|A|."""

    policy_lr: float = 3e-4
    """Adam learning rate of the policy (and of alpha)."""
    q_lr: float = 1e-3
    """Adam learning rate of the critics."""
    tau: float = 0.005
    """Target critics move this fraction toward the online ones after each update."""
    learning_starts: int = 5_000
    """Env steps with uniformly random actions before learning starts.
    A run shorter than the preset's budget gets at most 5% of its steps (or the preset's share, if larger)
    unless a flag or --config sets it."""
    policy_frequency: int = 1
    """Critic updates per policy (and alpha) update."""
    alpha: float = 0.2
    """Entropy temperature when not tuned automatically (and its starting value when it is)."""
    autotune: bool = True
    """Tune alpha so the policy's entropy tracks target_entropy."""
    target_entropy_scale: float = 1.0
    """Target entropy = -scale * |A| (the paper's heuristic with scale 1)."""
    hidden: tuple[int, ...] = (256, 256)
    """Widths of policy and critic MLPs."""

    CHECKS: ClassVar[dict[str, Constraint]] = {
        "policy_lr": POSITIVE, "q_lr": POSITIVE, "tau": DISCOUNT, "policy_frequency": COUNT,
        "alpha": POSITIVE,  # tuned as log(alpha)
        "target_entropy_scale": FINITE, "hidden": COUNT,
    }
    READ_ONLY_WITH: ClassVar[dict[str, tuple[str, tuple[Any, ...]]]] = {"target_entropy_scale": ("autotune", (True,))}
    """Fields read only with another one's value (:func:`rlkit.config.refuse_unread_flags`)."""


# Env family -> config changes and run defaults (num_envs, total_steps).
PRESETS: dict[Family, dict[str, Any]] = {
    "mujoco": {"num_envs": 1, "total_steps": 1_000_000},  # the config's defaults
    "other": {"learning_starts": 1_000, "num_envs": 1, "total_steps": 100_000},  # Pendulum-sized: a short warm-up
}


class SAC(Agent):
    """Soft Q-learning target ``r + gamma (min_k Q'_k(s', a') - alpha log pi(a'|s'))`` with ``a' ~ pi(s')``."""

    config_class = SACConfig
    action_spaces = (gym.spaces.Box,)
    source_kind = "replay"
    remote_actors = True

    @classmethod
    def check_spaces(cls, obs_space: gym.Space, action_space: gym.Space, name: str = "") -> None:
        super().check_spaces(obs_space, action_space, name)
        check_bounded_actions(name or cls.__name__, action_space)

    def __init__(self, config: SACConfig, obs_space, action_space, device="cpu", total_steps=1_000_000, seed=None):
        super().__init__(config, obs_space, action_space, device, total_steps, seed)
        act_dim = int(np.prod(action_space.shape))
        self.actor = SquashedGaussianActor(obs_space.shape, act_dim, config.hidden).to(self.device)
        self.critic = QEnsemble(obs_space.shape, act_dim, config.hidden, num_critics=2).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_optimizer = make_adam(self.actor.parameters(), config.policy_lr, self.device)
        self.critic_optimizer = make_adam(self.critic.parameters(), config.q_lr, self.device)
        self.log_alpha = torch.tensor(math.log(config.alpha), device=self.device, requires_grad=config.autotune)
        self.alpha_optimizer = make_adam([self.log_alpha], config.policy_lr, self.device) if config.autotune else None
        self.target_entropy = -config.target_entropy_scale * act_dim
        self.updates = 0

    @property
    def alpha(self) -> float:
        return self.log_alpha.detach().exp().item()

    def act(self, obs: np.ndarray, explore: bool = False, deterministic: bool = True) -> np.ndarray:
        """Training: uniform actions until learning starts, then samples of pi; evaluation: tanh of the mean
        (or a sample when not ``deterministic``)."""
        if explore and (warmup := warm_up_actions(self, len(obs))) is not None:
            return warmup
        with torch.inference_mode():
            x = torch.as_tensor(obs, device=self.device)  # bytes stay bytes: the networks scale them
            actions, _ = self.actor(x, deterministic=deterministic and not explore)
        return actions.cpu().numpy()

    def buffer_spec(self) -> ReplaySpec:
        return continuous_replay(self)

    def td_target(self, batch: Batch) -> torch.Tensor:
        """The soft Bellman target, shape (B,)."""
        with torch.no_grad():
            next_actions, next_log_probs = self.actor(batch.next_obs)
            next_q = self.critic_target(batch.next_obs, next_actions).min(-1).values
            soft_value = next_q - self.log_alpha.exp() * next_log_probs
            return batch.rewards + batch.discounts * (1.0 - batch.terminated) * soft_value

    def update(self, batch: Batch) -> dict[str, float]:
        c = self.config
        td_target = self.td_target(batch)
        q = self.critic(batch.obs, batch.actions)  # (B, 2)
        critic_loss = (q - td_target[:, None]).pow(2).mean(0).sum()
        optimizer_step(self.critic_optimizer, critic_loss, self.critic.parameters(), 0.0)
        self.updates += 1
        metrics = {"losses/critic_loss": critic_loss.item(), "losses/q_values": q.mean().item()}

        if self.updates % c.policy_frequency == 0:
            self.critic.requires_grad_(False)  # the policy's gradient flows through Q, Q's weights need none
            actions, log_probs = self.actor(batch.obs)  # reparameterized: gradients flow through the sample
            q_pi = self.critic(batch.obs, actions).min(-1).values
            actor_loss = (self.log_alpha.exp().detach() * log_probs - q_pi).mean()
            optimizer_step(self.actor_optimizer, actor_loss, self.actor.parameters(), 0.0)
            self.critic.requires_grad_(True)
            metrics.update({"losses/actor_loss": actor_loss.item(), "losses/entropy": -log_probs.mean().item()})
            if self.alpha_optimizer is not None:
                # Raise alpha when the entropy is below target, lower it when above.
                alpha_loss = -(self.log_alpha.exp() * (log_probs.detach() + self.target_entropy)).mean()
                optimizer_step(self.alpha_optimizer, alpha_loss, [self.log_alpha], 0.0)
                metrics["losses/alpha_loss"] = alpha_loss.item()
        polyak_update(self.critic_target, self.critic, c.tau)
        metrics["losses/alpha"] = self.alpha
        return metrics

    def acting_state(self) -> dict[str, Any]:
        return {"actor": self.actor.state_dict()}

    def load_acting_state(self, state: dict[str, Any]) -> None:
        self.actor.load_state_dict(state["actor"])

    def state_dict(self) -> dict[str, Any]:
        return {
            "actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(), "log_alpha": self.log_alpha.detach().clone(),
            "actor_optimizer": self.actor_optimizer.state_dict(), "critic_optimizer": self.critic_optimizer.state_dict(),
            "alpha_optimizer": self.alpha_optimizer.state_dict() if self.alpha_optimizer is not None else None,
            "counters": {"updates": self.updates}, "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in ("actor", "critic", "critic_target", "actor_optimizer", "critic_optimizer"):
            getattr(self, name).load_state_dict(state[name])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        if self.alpha_optimizer is not None:
            self.alpha_optimizer.load_state_dict(state["alpha_optimizer"])
        self.updates = state["counters"]["updates"]
        self.rng.bit_generator.state = state["rng"]
