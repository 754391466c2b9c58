"""Asynchronous advantage actor-critic (Mnih et al. 2016): worker processes learn hogwild into one shared model.

The model and the RMSprop statistics live in shared memory. Each worker (see :mod:`rlkit.sources.async_`) copies the
shared weights into a local network, plays ``num_steps`` steps (t_max) in its own env(s), computes the loss of that
segment on the local copy, and hands the gradients to the shared optimizer, which steps the shared weights without
any lock. That update is :meth:`A3C.learn`, which the workers call; :meth:`A3C.update`, which the loop calls, only
averages the metrics the workers report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import gymnasium as gym
import torch
from torch import nn

from rlkit.agents.policy_gradient import LossWeights, PolicyAgent, PolicyGradientConfig
from rlkit.buffers.rollout import gae
from rlkit.checkpoint import copy_tensors
from rlkit.config import COUNT, POSITIVE, Bound, Constraint
from rlkit.envs import Family
from rlkit.errors import UserError
from rlkit.nets.policies import frozen
from rlkit.optim import optimizer_step

if TYPE_CHECKING:  # the source that runs the workers defines their messages (and imports this module)
    from rlkit.sources.async_ import Segment, WorkerReport


@dataclass
class A3CConfig(PolicyGradientConfig, LossWeights):
    """A3C hyperparameters. Defaults follow the paper: t_max 5, RMSprop with shared statistics (alpha 0.99, eps 0.1,
    as in its Atari experiments and dgriff777/rl_a3c_pytorch), learning rate annealed to 0, entropy 0.01; the
    gradient norm is clipped at 40 (the usual value of the public PyTorch implementations). No observation or
    reward normalization: the workers would have to share the running statistics."""

    num_workers: int = 2
    """Worker processes, each with its own env(s) and local network (the paper used 16, the course 16-32, on
    machines with that many cores; 2 suits a 2-core machine). With A3C, --num-envs is the sub-envs per worker."""
    num_steps: int = 5
    """t_max: steps each worker takes (per sub-env) between two of its updates."""
    learning_rate: float = 5e-4
    """Shared RMSprop learning rate."""
    gae_lambda: float = 1.0
    """GAE lambda over a segment (1: plain n-step returns, 0: one-step TD errors)."""
    ent_coef: float = 0.01
    """Entropy bonus weight (beta)."""
    max_grad_norm: float = 40.0
    """Clip each worker's global gradient norm to this before the shared step (0 disables)."""
    normalize_advantage: bool = False
    """Standardize advantages over each segment."""
    rmsprop_alpha: float = 0.99
    """Decay of the shared RMSprop's running mean of squared gradients."""
    rmsprop_eps: float = 0.1
    """Shared RMSprop epsilon, added to the root mean square (PyTorch's convention)."""

    CHECKS: ClassVar[dict[str, Constraint]] = {
        "num_workers": COUNT, "rmsprop_alpha": Bound(0, 1, high_open=True), "rmsprop_eps": POSITIVE,
    }


# Env family -> config changes and run defaults (total_steps; num_envs: sub-envs per worker, one game each as in
# the paper). Every family takes the paper's values: the Nature CNN comes with image observations, a (64, 64) tanh
# MLP with vectors (2 workers reach CartPole's 500 with them).
PRESETS: dict[Family, dict[str, Any]] = {
    "atari": {"num_envs": 1, "total_steps": 10_000_000},
    "mujoco": {"num_envs": 1, "total_steps": 1_000_000},
    "other": {"num_envs": 1, "total_steps": 100_000},
}


class SharedRMSprop(torch.optim.RMSprop):
    """PyTorch's RMSprop whose statistics are created at construction and moved to shared memory, so that every
    process stepping its (pickled) copy updates the same running mean of squared gradients (the paper's "shared
    RMSProp"). The update is ``v <- alpha v + (1 - alpha) g^2; theta <- theta - lr g / (sqrt(v) + eps)``."""

    def __init__(self, params: Any, lr: float, alpha: float = 0.99, eps: float = 0.1):
        super().__init__(params, lr=lr, alpha=alpha, eps=eps)
        for group in self.param_groups:
            for p in group["params"]:
                # The keys RMSprop would create lazily at its first step; created now so that they can be shared.
                # ("step" is only counted, racily across processes; RMSprop's update does not use it.)
                self.state[p]["step"] = torch.zeros((), dtype=torch.float32)
                self.state[p]["square_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        self.share_memory()

    def share_memory(self) -> None:
        """Move every state tensor to shared memory (in place; call before starting workers)."""
        for state in self.state.values():
            for value in state.values():
                if torch.is_tensor(value):
                    value.share_memory_()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load, then share the loaded tensors (loading replaces the state tensors with fresh ones)."""
        super().load_state_dict(state_dict)
        self.share_memory()


class A3C(PolicyAgent):
    """A shared-memory actor-critic and a shared RMSprop, stepped by worker processes with hogwild updates.

    The model always lives on the CPU (worker processes share its memory), whatever ``device`` says.
    """

    config_class = A3CConfig
    source_kind = "async"

    def __init__(self, config: A3CConfig, obs_space: gym.Space, action_space: gym.Space, device="cpu",
                 total_steps: int = 1_000_000, seed: int | None = None):
        if config.num_workers < 1:
            raise UserError(f"--num-workers must be at least 1, got {config.num_workers}")
        super().__init__(config, obs_space, action_space, "cpu", total_steps, seed)
        self.net.share_memory()
        self.optimizer = SharedRMSprop(self.net.parameters(), config.learning_rate, config.rmsprop_alpha,
                                       config.rmsprop_eps)

    def buffer_spec(self) -> None:
        """None: each worker keeps its own segment."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """A copy, not views of the shared tensors: the workers go on stepping those while the loop checks and
        writes the checkpoint, which must hold one set of numbers whose checksums match."""
        return copy_tensors(super().state_dict())

    def __getstate__(self) -> dict[str, Any]:
        """What a worker receives: everything but the minibatch generator, which A3C never uses and which
        torch.multiprocessing cannot pickle (its state tensor fails to rebuild in the child)."""
        return {**self.__dict__, "generator": None}

    # ------------------------------------------------------------------ in a worker
    def targets(self, segment: Segment, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Advantages and value targets (T, N) of a segment given V(s_t) (T, N): GAE(lambda) within each episode,
        bootstrapping from V(s_T) after the segment and from the true last observation after a time limit."""
        c = self.config
        return gae(segment.rewards, values, segment.terminated, segment.truncated, segment.last_values, c.gamma,
                   c.gae_lambda, segment.final_values)

    def learn(self, local_net: nn.Module, segment: Segment) -> dict[str, float]:
        """One asynchronous update, called by a worker: the segment's loss on ``local_net`` (its copy of the shared
        net the segment was collected with), its gradients clipped and given to the shared optimizer, which steps
        the shared net. The learning rate is annealed by ``step``, the global count the worker set.

        The paper accumulates gradients over the segment, so the losses are sums over its steps (means over
        sub-envs); the critic regresses on the GAE(lambda) returns (the n-step returns for lambda = 1).
        """
        c = self.config
        T, N = segment.rewards.shape
        dist, values = local_net(segment.obs.flatten(0, 1))
        values = values.view(T, N)
        advantages, returns = self.targets(segment, values.detach())
        if c.normalize_advantage and advantages.numel() > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        log_prob = dist.log_prob(segment.actions.flatten(0, 1)).view(T, N)
        policy_loss = -(advantages * log_prob).sum(0).mean()
        value_loss = (returns - values).pow(2).sum(0).mean()
        entropy = dist.entropy().view(T, N).sum(0).mean()
        loss = policy_loss + c.vf_coef * value_loss - c.ent_coef * entropy

        lr = self.anneal_learning_rate(self.optimizer)
        old_policy = frozen(dist)
        grad_norm = optimizer_step(self.optimizer, loss, local_net.parameters(), c.max_grad_norm,
                                   apply_to=self.net.parameters())
        # The shared net after the step (and any other worker's meanwhile) against the copy that collected the segment
        kl = self.kl_after_step(old_policy, segment.obs.flatten(0, 1))
        return {"losses/policy_loss": policy_loss.item(), "losses/value_loss": value_loss.item(),
                "losses/entropy": entropy.item(), "losses/grad_norm": float(grad_norm), "charts/learning_rate": lr,
                "losses/kl": kl}

    # ------------------------------------------------------------------ in the main process
    def update(self, reports: list[WorkerReport]) -> dict[str, float]:
        """The workers' metrics since the last call, averaged over their updates (the learning happened in
        :meth:`learn`); counts the updates."""
        total = sum(r.updates for r in reports)
        self.updates += total
        if total == 0:
            return {}
        keys = {key for r in reports for key in r.metrics}
        return {key: sum(r.metrics.get(key, 0.0) * r.updates for r in reports) / total for key in keys}
