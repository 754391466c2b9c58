"""Deterministic policy gradient with replay: DDPG (Lillicrap et al. 2016) and TD3 (Fujimoto et al. 2018), which
adds twin critics with the minimum in the target, target policy smoothing and delayed actor and target updates."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch

from rlkit.agents.base import Agent, ReplayConfig
from rlkit.buffers import Batch, ReplaySpec
from rlkit.config import COUNT, DISCOUNT, NON_NEGATIVE, POSITIVE, Above, Constraint, Readers
from rlkit.envs import Family
from rlkit.errors import UserError
from rlkit.nets.continuous import DeterministicActor, QEnsemble
from rlkit.optim import make_adam, optimizer_step, polyak_update


@dataclass
class DDPGConfig(ReplayConfig):
    """DDPG / TD3 hyperparameters. Defaults are CleanRL's MuJoCo values for DDPG (Adam 3e-4, batch 256, tau
    0.005, 25k random steps first, Gaussian exploration noise 0.1)."""

    learning_rate: float = 3e-4
    """Adam learning rate of actor and critics."""
    tau: float = 0.005
    """Target networks move this fraction toward the online ones after each (actor) update."""
    learning_starts: int = 25_000
    """Env steps with uniformly random actions before learning starts.
    A run shorter than the preset's budget gets at most 5% of its steps (or the preset's share, if larger)
    unless a flag or --config sets it."""
    exploration_noise: float = 0.1
    """Std of the Gaussian noise added to actions in training (actions are in [-1, 1])."""
    hidden: tuple[int, ...] = (256, 256)
    """Widths of actor and critic MLPs."""
    twin_critics: bool = False
    """TD3: two critics, the smaller target value is used (against overestimation)."""
    target_policy_noise: float = 0.0
    """TD3: std of the noise added to the target action (target policy smoothing; 0 disables)."""
    target_noise_clip: float = 0.5
    """TD3: the smoothing noise is clipped to +-this."""
    policy_frequency: int = 1
    """Critic updates per actor and target update (TD3: 2)."""

    CHECKS: ClassVar[dict[str, Constraint]] = {
        "learning_rate": POSITIVE, "tau": DISCOUNT, "exploration_noise": NON_NEGATIVE, "hidden": COUNT,
        "target_policy_noise": NON_NEGATIVE, "target_noise_clip": NON_NEGATIVE, "policy_frequency": COUNT,
    }
    READ_ONLY_WITH: ClassVar[dict[str, tuple[str, Readers]]] = {
        "target_noise_clip": ("target_policy_noise", Above(0.0, example=0.2)),
    }
    """Fields read only with another one's value (:func:`rlkit.config.refuse_unread_flags`)."""


# Env family -> config changes and run defaults (num_envs, total_steps).
PRESETS: dict[Family, dict[str, Any]] = {
    "mujoco": {"num_envs": 1, "total_steps": 1_000_000},  # the config's defaults
    # Pendulum-sized tasks: rl-baselines3-zoo's shorter warm-up and Adam 1e-3.
    "other": {"learning_rate": 1e-3, "learning_starts": 1_000, "gamma": 0.98, "buffer_size": 200_000,
              "hidden": (400, 300), "num_envs": 1, "total_steps": 100_000},
}


# Agent names: name -> config changes.
VARIANTS: dict[str, dict[str, Any]] = {
    "ddpg": {},
    "td3": {"twin_critics": True, "target_policy_noise": 0.2, "target_noise_clip": 0.5, "policy_frequency": 2},
}


def continuous_replay(agent: Agent) -> ReplaySpec:
    """Replay for [-1, 1] actions and float observations, or uint8 ones as they come (images: a quarter of the
    memory; the networks scale bytes themselves)."""
    c = agent.config
    byte_obs = agent.obs_space.dtype == np.uint8
    return ReplaySpec(c.buffer_size, agent.obs_space.shape, np.uint8 if byte_obs else np.float32,
                      agent.action_space.shape, np.float32, gamma=c.gamma)


def warm_up_actions(agent: Agent, n: int) -> np.ndarray | None:
    """Uniform actions in [-1, 1] while the whole vector step of ``n`` env steps lies within the first
    ``learning_starts`` steps of the run; None after."""
    if agent.step + n <= agent.config.learning_starts:
        return agent.rng.uniform(-1, 1, (n, *agent.action_space.shape)).astype(np.float32)
    return None


def check_bounded_actions(agent_name: str, action_space: gym.Space) -> None:
    """Refuse a Box without finite bounds on every entry: a squashed policy's [-1, 1] is mapped onto the bounds
    (:func:`rlkit.envs.make_env`), and with none it would silently act in [-1, 1] alone."""
    if isinstance(action_space, gym.spaces.Box) and not (np.isfinite(action_space.low).all()
                                                         and np.isfinite(action_space.high).all()):
        raise UserError(f"{agent_name} squashes its actions into the action space's bounds, but this env's "
                        f"{action_space} has no finite bounds: give its action_space the range the env can take, or "
                        "use ppo, a2c or trpo, whose Gaussian policies need none")


class DDPG(Agent):
    """Actor ``mu(s)`` trained to maximize ``Q(s, mu(s))``; critic(s) trained on ``r + gamma Q'(s', mu'(s'))``."""

    config_class = DDPGConfig
    action_spaces = (gym.spaces.Box,)
    source_kind = "replay"
    remote_actors = True

    @classmethod
    def check_spaces(cls, obs_space: gym.Space, action_space: gym.Space, name: str = "") -> None:
        super().check_spaces(obs_space, action_space, name)
        check_bounded_actions(name or cls.__name__, action_space)

    def __init__(self, config: DDPGConfig, obs_space, action_space, device="cpu", total_steps=1_000_000, seed=None):
        super().__init__(config, obs_space, action_space, device, total_steps, seed)
        act_dim = int(np.prod(action_space.shape))
        self.actor = DeterministicActor(obs_space.shape, act_dim, config.hidden).to(self.device)
        self.critic = QEnsemble(obs_space.shape, act_dim, config.hidden, 2 if config.twin_critics else 1).to(self.device)
        self.actor_target, self.critic_target = copy.deepcopy(self.actor), copy.deepcopy(self.critic)
        self.actor_target.requires_grad_(False)
        self.critic_target.requires_grad_(False)
        self.actor_optimizer = make_adam(self.actor.parameters(), config.learning_rate, self.device)
        self.critic_optimizer = make_adam(self.critic.parameters(), config.learning_rate, self.device)
        self.updates = 0

    def act(self, obs: np.ndarray, explore: bool = False, deterministic: bool = True) -> np.ndarray:
        """Training: uniform actions until learning starts, then ``mu(s)`` plus Gaussian noise; else ``mu(s)``."""
        if explore and (warmup := warm_up_actions(self, len(obs))) is not None:
            return warmup
        with torch.inference_mode():
            actions = self.actor(torch.as_tensor(obs, device=self.device)).cpu().numpy()
        if explore:
            actions = actions + self.rng.normal(0.0, self.config.exploration_noise, actions.shape)
        return np.clip(actions, -1.0, 1.0).astype(np.float32)

    def buffer_spec(self) -> ReplaySpec:
        return continuous_replay(self)

    def td_target(self, batch: Batch) -> torch.Tensor:
        """``r + gamma^m (1 - terminated) min_k Q'_k(s', mu'(s') + clip(noise))``, shape (B,)."""
        c = self.config
        with torch.no_grad():
            next_actions = self.actor_target(batch.next_obs)
            if c.target_policy_noise > 0:
                noise = (torch.randn_like(next_actions) * c.target_policy_noise).clamp(-c.target_noise_clip,
                                                                                        c.target_noise_clip)
                next_actions = (next_actions + noise).clamp(-1.0, 1.0)
            next_q = self.critic_target(batch.next_obs, next_actions).min(-1).values
            return batch.rewards + batch.discounts * (1.0 - batch.terminated) * next_q

    def update(self, batch: Batch) -> dict[str, float]:
        c = self.config
        td_target = self.td_target(batch)
        q = self.critic(batch.obs, batch.actions)  # (B, K)
        critic_loss = (q - td_target[:, None]).pow(2).mean(0).sum()  # each critic's MSE, summed
        optimizer_step(self.critic_optimizer, critic_loss, self.critic.parameters(), 0.0)
        self.updates += 1
        metrics = {"losses/critic_loss": critic_loss.item(), "losses/q_values": q.mean().item()}
        if self.updates % c.policy_frequency == 0:
            self.critic.requires_grad_(False)  # the actor's gradient flows through Q, Q's weights need none
            actor_loss = -self.critic(batch.obs, self.actor(batch.obs))[:, 0].mean()
            optimizer_step(self.actor_optimizer, actor_loss, self.actor.parameters(), 0.0)
            self.critic.requires_grad_(True)
            polyak_update(self.actor_target, self.actor, c.tau)
            polyak_update(self.critic_target, self.critic, c.tau)
            metrics["losses/actor_loss"] = actor_loss.item()
        return metrics

    def acting_state(self) -> dict[str, Any]:
        return {"actor": self.actor.state_dict()}

    def load_acting_state(self, state: dict[str, Any]) -> None:
        self.actor.load_state_dict(state["actor"])

    def state_dict(self) -> dict[str, Any]:
        return {
            "actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
            "actor_target": self.actor_target.state_dict(), "critic_target": self.critic_target.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(), "critic_optimizer": self.critic_optimizer.state_dict(),
            "counters": {"updates": self.updates}, "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in ("actor", "critic", "actor_target", "critic_target", "actor_optimizer", "critic_optimizer"):
            getattr(self, name).load_state_dict(state[name])
        self.updates = state["counters"]["updates"]
        self.rng.bit_generator.state = state["rng"]
