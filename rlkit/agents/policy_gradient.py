"""What the policy-gradient agents share: an actor-critic network, observation normalization, acting, the rollout
they learn from, and saving. Each algorithm (REINFORCE, A2C, PPO, TRPO) adds its config and its ``update``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlkit.agents.base import Agent
from rlkit.buffers.rollout import RolloutSpec
from rlkit.config import COUNT, DISCOUNT, FINITE, NON_NEGATIVE, POSITIVE, UNIT, Constraint, OneOf, check
from rlkit.distributed import sum_over_processes
from rlkit.nets import ActorCritic, RunningMeanStd, kl_divergence
from rlkit.optim import set_learning_rate


@dataclass
class PolicyGradientConfig:
    """Fields every policy-gradient agent has."""

    num_steps: int = 128
    """Steps collected per sub-env before each update (the rollout is num_steps x num_envs)."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE lambda: 0 is one-step TD, 1 is the Monte Carlo return."""
    learning_rate: float = 3e-4
    """Optimizer learning rate."""
    anneal_lr: bool = True
    """Decay the learning rate linearly to 0 over the run."""
    max_grad_norm: float = 0.5
    """Clip the global gradient norm to this (0 disables)."""
    normalize_advantage: bool = True
    """Standardize advantages (per minibatch)."""
    hidden: tuple[int, ...] = (64, 64)
    """MLP widths for vector observations (image stacks use the Nature CNN)."""
    activation: str = "tanh"
    """MLP activation: tanh or relu."""
    log_std_init: float = 0.0
    """Initial log standard deviation of a Gaussian policy."""

    CHECKS: ClassVar[dict[str, Constraint]] = {
        "num_steps": COUNT, "gamma": DISCOUNT, "gae_lambda": UNIT, "learning_rate": POSITIVE,
        "max_grad_norm": NON_NEGATIVE, "hidden": COUNT, "activation": OneOf(("tanh", "relu")),
        "log_std_init": FINITE,
    }

    def __post_init__(self) -> None:
        check(self)  # with the tables of the loss-weight and normalization fields the subclass mixes in


@dataclass
class LossWeights:
    """Fields of the agents whose policy and value losses (and entropy bonus) are one weighted sum."""

    ent_coef: float = 0.0
    """Entropy bonus weight."""
    vf_coef: float = 0.5
    """Value loss weight (when actor and critic share one loss)."""

    CHECKS: ClassVar[dict[str, Constraint]] = {"ent_coef": NON_NEGATIVE, "vf_coef": NON_NEGATIVE}


@dataclass
class Normalization:
    """Fields of the agents that learn from a :class:`~rlkit.sources.RolloutSource`, which normalizes rewards."""

    normalize_obs: bool = False
    """Standardize observations with running statistics (saved in the checkpoint, used in evaluation)."""
    normalize_reward: bool = False
    """Scale training rewards by the running std of the discounted return (evaluation reports raw rewards)."""


class PolicyStep(NamedTuple):
    """What acting in training produces, for the rollout."""

    obs: torch.Tensor
    """Observations as the network saw them (normalized when normalize_obs)."""
    actions: torch.Tensor
    """Sampled actions (unclipped, so their log-probs are exact)."""
    env_actions: np.ndarray
    """Actions sent to the env (clipped to a Box's bounds)."""
    log_probs: torch.Tensor
    values: torch.Tensor


class PolicyAgent(Agent):
    """Shared machinery of the policy-gradient agents. Subclasses define ``update`` and optimizers."""

    action_spaces = (gym.spaces.Discrete, gym.spaces.Box)
    source_kind = "rollout"
    mask_unfinished_episodes = False
    """REINFORCE: steps of episodes still running at the end of a rollout have no Monte Carlo return yet."""

    def __init__(
        self,
        config: PolicyGradientConfig,
        obs_space: gym.Space,
        action_space: gym.Space,
        device: str | torch.device = "cpu",
        total_steps: int = 1_000_000,
        seed: int | None = None,
        shared: bool | None = None,
        normalize_obs: bool = False,
    ):
        super().__init__(config, obs_space, action_space, device, total_steps, seed)
        images = len(obs_space.shape) == 3
        self.net = ActorCritic(obs_space.shape, action_space, config.hidden, config.activation,
                               shared=images if shared is None else shared,
                               log_std_init=config.log_std_init).to(self.device)
        # Under torchrun every process's observations count, so all processes normalize alike.
        self.obs_norm = (RunningMeanStd(obs_space.shape, all_reduce=sum_over_processes()).to(self.device)
                         if normalize_obs else None)
        self.continuous = isinstance(action_space, gym.spaces.Box)
        if self.continuous:
            self.action_low = np.asarray(action_space.low, dtype=np.float32)
            self.action_high = np.asarray(action_space.high, dtype=np.float32)
        self.updates = 0
        self.generator = torch.Generator().manual_seed(seed if seed is not None else 0)  # minibatch shuffling

    # ------------------------------------------------------------------ acting
    def _observe(self, obs: np.ndarray | torch.Tensor, update_stats: bool) -> torch.Tensor:
        x = torch.as_tensor(obs, device=self.device)
        if self.obs_norm is None:
            return x if x.dtype == torch.uint8 else x.float()
        if update_stats:
            self.obs_norm.update(x)
        return self.obs_norm(x.float()).float()

    def _to_env(self, actions: torch.Tensor) -> np.ndarray:
        actions = actions.cpu().numpy()
        # np.minimum/np.maximum: what np.clip computes, without its ~5 us of Python wrappers per step
        return np.minimum(np.maximum(actions, self.action_low), self.action_high) if self.continuous else actions

    @torch.no_grad()
    def policy_step(self, obs: np.ndarray) -> PolicyStep:
        """Sample actions for training; updates the observation statistics."""
        x = self._observe(obs, update_stats=True)
        actions, log_probs, values = self.net.sample(x)
        return PolicyStep(x, actions, self._to_env(actions), log_probs, values)

    @torch.no_grad()
    def value_of(self, obs: np.ndarray) -> torch.Tensor:
        """V(s) of raw observations (for bootstrapping at time limits); statistics stay as they are."""
        return self.net.value(self._observe(obs, update_stats=False))

    @torch.no_grad()
    def act(self, obs: np.ndarray, explore: bool = False, deterministic: bool = True) -> np.ndarray:
        """``explore``: sample as in training. Otherwise the mode (mean or argmax), or a sample when not
        ``deterministic``; evaluation never changes the normalization statistics."""
        if explore:
            return self.policy_step(obs).env_actions
        dist = self.net.distribution(self._observe(obs, update_stats=False))
        return self._to_env(dist.mode if deterministic else dist.sample())

    # ------------------------------------------------------------------ learning
    def buffer_spec(self) -> RolloutSpec:
        """The (num_steps x num_envs) storage this configuration asks for."""
        obs_dtype = torch.uint8 if self.obs_space.dtype == np.uint8 and self.obs_norm is None else torch.float32
        action_shape = self.action_space.shape if self.continuous else ()
        action_dtype = torch.float32 if self.continuous else torch.int64
        return RolloutSpec(self.config.num_steps, self.obs_space.shape, action_shape, obs_dtype, action_dtype,
                           self.device)

    def anneal_learning_rate(self, *optimizers: torch.optim.Optimizer) -> float:
        """Set the learning rate for the coming update (linear decay to 0 over the run when anneal_lr)."""
        lr = self.config.learning_rate
        if self.config.anneal_lr:
            lr *= max(0.0, 1.0 - self.step / self.total_steps)
        for optimizer in optimizers:
            set_learning_rate(optimizer, lr)
        return lr

    def kl_after_step(self, old: Any, obs: torch.Tensor, net: nn.Module | None = None) -> float:
        """Mean KL(pi_old || pi_new) over ``obs``: how far an update moved the policy. ``old`` is the policy's
        distribution on ``obs`` from before the update (:func:`rlkit.nets.policies.frozen`)."""
        with torch.no_grad():
            return float(kl_divergence(old, (net or self.net).distribution(obs)).mean())

    @staticmethod
    def explained_variance(values: torch.Tensor, returns: torch.Tensor) -> float:
        """1 - Var(returns - values) / Var(returns): 1 is a perfect critic, 0 no better than a constant."""
        var = returns.var()
        return float("nan") if var == 0 else float(1 - (returns - values).var() / var)

    # ------------------------------------------------------------------ saving
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Named optimizers, saved with the agent."""
        return {"optimizer": self.optimizer}

    def state_dict(self) -> dict[str, Any]:
        return {
            "net": self.net.state_dict(),
            "obs_norm": self.obs_norm.state_dict() if self.obs_norm is not None else None,
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers().items()},
            "counters": {"updates": self.updates},
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        if self.obs_norm is not None:
            self.obs_norm.load_state_dict(state["obs_norm"])
        for name, opt in self.optimizers().items():
            opt.load_state_dict(state["optimizers"][name])
        self.updates = state["counters"]["updates"]
        self.generator.set_state(state["generator"])
