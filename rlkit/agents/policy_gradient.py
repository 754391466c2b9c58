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
from rlkit.buffers.rollout import RolloutBatch, RolloutSpec
from rlkit.config import COUNT, DISCOUNT, FINITE, NON_NEGATIVE, POSITIVE, UNIT, Constraint, OneOf, check
from rlkit.distributed import sum_over_processes
from rlkit.errors import UserError
from rlkit.nets import ActorCritic, RunningMeanStd, kl_divergence
from rlkit.nets.encoders import encoder_kind
from rlkit.nets.policies import ActionDistribution, action_choices
from rlkit.nets.recurrent import CELLS, RecurrentActorCritic
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
        length = getattr(self, "sequence_length", 0)
        if length and self.num_steps % length:
            raise UserError(f"--sequence-length {length} must divide --num-steps {self.num_steps}: pick a divisor, "
                            "or 0 for the automatic length")


@dataclass
class Recurrence:
    """Fields of the agents that can learn a recurrent policy (PPO and A2C, as sb3-contrib's RecurrentPPO)."""

    recurrent: str = "none"
    """none, lstm or gru: a recurrent core between each torso and its head, its memory carried from step to step
    and zeroed where an episode starts (in training, evaluation and evaluate.py alike)."""
    recurrent_hidden: int = 256
    """Units of each recurrent core."""
    sequence_length: int = 0
    """Steps per training sequence, a divisor of num_steps: gradients flow back through time within a sequence,
    which starts from the memory stored when it was collected. 0: the longest that still gives every minibatch a
    sequence (each sub-env's whole rollout when there are enough sub-envs)."""

    CHECKS: ClassVar[dict[str, Constraint]] = {
        "recurrent": OneOf(("none", *CELLS)), "recurrent_hidden": COUNT, "sequence_length": NON_NEGATIVE,
    }
    READ_ONLY_WITH: ClassVar[dict[str, tuple[str, tuple[Any, ...]]]] = {
        "recurrent_hidden": ("recurrent", CELLS), "sequence_length": ("recurrent", CELLS)}
    """Fields read only with another one's value (:func:`rlkit.config.refuse_unread_flags`)."""


RECURRENT_HIDDEN: dict[str, dict[str, int]] = {
    "atari": {"recurrent_hidden": 128},  # CleanRL's ppo_atari_lstm
    "other": {"recurrent_hidden": 64},  # rl-baselines3-zoo's ppo_lstm.yml, for its velocity-masked envs and MuJoCo
}
"""The recurrent core's width per env family (the class default, 256, is sb3-contrib's RecurrentPPO's)."""


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
    memory: torch.Tensor | None = None
    """A recurrent policy's memory after the step."""


class PolicyAgent(Agent):
    """Shared machinery of the policy-gradient agents. Subclasses define ``update`` and optimizers."""

    action_spaces = (gym.spaces.Discrete, gym.spaces.Box, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)
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
        images = encoder_kind(obs_space.shape) != "mlp"
        shared = images if shared is None else shared
        self.recurrent = getattr(config, "recurrent", "none") != "none"
        if self.recurrent:
            self.net: ActorCritic | RecurrentActorCritic = RecurrentActorCritic(
                obs_space.shape, action_space, config.hidden, config.activation, shared, config.log_std_init,
                config.recurrent, config.recurrent_hidden).to(self.device)
        else:
            self.net = ActorCritic(obs_space.shape, action_space, config.hidden, config.activation, shared=shared,
                                   log_std_init=config.log_std_init).to(self.device)
        self.eval_memory: torch.Tensor | None = None  # act()'s memory of each evaluation game
        self.eval_starts: torch.Tensor | None = None
        # Under torchrun every process's observations count, so all processes normalize alike.
        self.obs_norm = (RunningMeanStd(obs_space.shape, all_reduce=sum_over_processes()).to(self.device)
                         if normalize_obs else None)
        self.continuous = isinstance(action_space, gym.spaces.Box)
        self.choices = action_choices(action_space)  # MultiDiscrete, MultiBinary: choices of each entry
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
        if self.choices is not None:  # the env's own shape and dtype (MultiBinary's int8)
            return actions.reshape(len(actions), *self.action_space.shape).astype(self.action_space.dtype)
        # np.minimum/np.maximum: what np.clip computes, without its ~5 us of Python wrappers per step
        return np.minimum(np.maximum(actions, self.action_low), self.action_high) if self.continuous else actions

    def _starts(self, episode_starts: np.ndarray | torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(episode_starts, dtype=torch.float32, device=self.device)

    @torch.no_grad()
    def policy_step(self, obs: np.ndarray, memory: torch.Tensor | None = None,
                    episode_starts: np.ndarray | None = None) -> PolicyStep:
        """Sample actions for training; updates the observation statistics. A recurrent policy takes its
        ``memory`` after the previous step and the sub-envs whose episode starts with ``obs``."""
        x = self._observe(obs, update_stats=True)
        if not self.recurrent:
            actions, log_probs, values = self.net.sample(x)
            return PolicyStep(x, actions, self._to_env(actions), log_probs, values)
        actions, log_probs, values, memory = self.net.sample(x, memory, self._starts(episode_starts))
        return PolicyStep(x, actions, self._to_env(actions), log_probs, values, memory)

    @torch.no_grad()
    def value_of(self, obs: np.ndarray, memory: torch.Tensor | None = None,
                 episode_starts: np.ndarray | None = None) -> torch.Tensor:
        """V(s) of raw observations (for bootstrapping at time limits); statistics stay as they are. A recurrent
        critic reads them with ``memory`` (episode starts: none unless given)."""
        x = self._observe(obs, update_stats=False)
        if not self.recurrent:
            return self.net.value(x)
        starts = np.zeros(len(x)) if episode_starts is None else episode_starts
        return self.net.value(x, memory, self._starts(starts))

    def initial_memory(self, num_envs: int) -> torch.Tensor | None:
        """A recurrent policy's zero memory for ``num_envs`` sub-envs; None for a feed-forward one."""
        return self.net.initial_memory(num_envs).to(self.device) if self.recurrent else None

    def new_episodes(self, mask: np.ndarray) -> None:
        """Evaluation: the games of ``mask`` start anew, so a recurrent policy forgets them."""
        if self.recurrent and self.eval_starts is not None and len(mask) == len(self.eval_starts):
            self.eval_starts[torch.as_tensor(mask, device=self.device)] = 1.0

    @torch.no_grad()
    def act(self, obs: np.ndarray, explore: bool = False, deterministic: bool = True) -> np.ndarray:
        """``explore``: sample as in training. Otherwise the mode (mean or argmax), or a sample when not
        ``deterministic``; evaluation never changes the normalization statistics. A recurrent policy carries its
        memory of each game from call to call (zeroed by :meth:`new_episodes`, and whenever the batch size
        changes)."""
        if not self.recurrent:
            if explore:
                return self.policy_step(obs).env_actions
            dist = self.net.distribution(self._observe(obs, update_stats=False))
            return self._to_env(dist.mode if deterministic else dist.sample())
        n = len(obs)
        if self.eval_memory is None or self.eval_memory.shape[2] != n:
            self.eval_memory, self.eval_starts = self.initial_memory(n), torch.ones(n, device=self.device)
        dist, self.eval_memory = self.net.distribution(self._observe(obs, update_stats=explore), self.eval_memory,
                                                       self.eval_starts)
        self.eval_starts = torch.zeros(n, device=self.device)
        return self._to_env(dist.mode if deterministic and not explore else dist.sample())

    def outputs(self, batch: RolloutBatch) -> tuple[ActionDistribution, torch.Tensor]:
        """The policy's distribution and V(s) on a batch's rows; a recurrent policy runs the batch's sequences from
        their stored memory, resetting it where episodes start."""
        if batch.memory is None:
            return self.net(batch.obs)
        dist, values, _ = self.net(batch.obs, batch.memory, batch.episode_starts)
        return dist, values

    # ------------------------------------------------------------------ learning
    def buffer_spec(self) -> RolloutSpec:
        """The (num_steps x num_envs) storage this configuration asks for."""
        obs_dtype = torch.uint8 if self.obs_space.dtype == np.uint8 and self.obs_norm is None else torch.float32
        action_shape = (self.action_space.shape if self.continuous else
                        (len(self.choices),) if self.choices is not None else ())
        action_dtype = torch.float32 if self.continuous else torch.int64
        memory_shape = ()
        if self.recurrent:
            parts, layers, _, hidden = self.net.initial_memory(1).shape
            memory_shape = (parts, layers, hidden)
        return RolloutSpec(self.config.num_steps, self.obs_space.shape, action_shape, obs_dtype, action_dtype,
                           self.device, memory_shape, getattr(self.config, "sequence_length", 0),
                           getattr(self.config, "num_minibatches", 1))

    def anneal_learning_rate(self, *optimizers: torch.optim.Optimizer) -> float:
        """Set the learning rate for the coming update (linear decay to 0 over the run when anneal_lr)."""
        lr = self.config.learning_rate
        if self.config.anneal_lr:
            lr *= max(0.0, 1.0 - self.step / self.total_steps)
        for optimizer in optimizers:
            set_learning_rate(optimizer, lr)
        return lr

    def kl_after_step(self, old: Any, obs: torch.Tensor | RolloutBatch, net: nn.Module | None = None) -> float:
        """Mean KL(pi_old || pi_new) over ``obs`` (or a batch's rows): how far an update moved the policy. ``old`` is
        the policy's distribution on them from before the update (:func:`rlkit.nets.policies.frozen`)."""
        with torch.no_grad():
            new = self.outputs(obs)[0] if isinstance(obs, RolloutBatch) else (net or self.net).distribution(obs)
            return float(kl_divergence(old, new).mean())

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
