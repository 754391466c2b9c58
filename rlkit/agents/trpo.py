"""Trust region policy optimization (Schulman et al. 2015): a natural-gradient step of bounded KL on the policy,
found by conjugate gradient on Fisher-vector products, checked by a backtracking line search; the critic is fitted
separately by regression."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from rlkit.agents.policy_gradient import Normalization, PolicyAgent, PolicyGradientConfig
from rlkit.buffers.rollout import RolloutBatch, minibatches
from rlkit.config import COUNT, NON_NEGATIVE, POSITIVE, Bound, Constraint
from rlkit.envs import Family
from rlkit.nets import kl_divergence
from rlkit.nets.policies import frozen
from rlkit.optim import make_adam, optimizer_step


@dataclass
class TRPOConfig(PolicyGradientConfig, Normalization):
    """TRPO hyperparameters. Defaults follow Schulman et al. (2015) as in SB3-contrib's TRPO. The policy and the
    critic have separate objectives, so there are no loss weights (no entropy bonus either)."""

    num_steps: int = 2048
    """Steps collected per sub-env before each update."""
    learning_rate: float = 1e-3
    """Adam learning rate of the critic (the policy step size comes from max_kl)."""
    max_kl: float = 0.01
    """Trust region: largest mean KL(pi_old || pi_new) a policy step may take."""
    cg_iters: int = 15
    """Conjugate-gradient iterations for the natural gradient direction."""
    cg_damping: float = 0.1
    """Damping added to the Fisher matrix (F + damping I) for a stable solve."""
    line_search_shrink: float = 0.8
    """Backtracking factor of the line search."""
    line_search_steps: int = 10
    """Largest number of backtracking steps before the update is rejected."""
    critic_epochs: int = 10
    """Passes of critic regression over the rollout per update."""
    critic_minibatch_size: int = 128
    """Rows per critic minibatch."""
    anneal_lr: bool = False
    """Decay the critic's learning rate linearly to 0 over the run."""
    max_grad_norm: float = 0.0
    """Clip the critic's gradient norm to this (0 disables)."""

    CHECKS: ClassVar[dict[str, Constraint]] = {
        "max_kl": POSITIVE, "cg_iters": COUNT, "cg_damping": NON_NEGATIVE,
        "line_search_shrink": Bound(0, 1, low_open=True, high_open=True),  # 1 would never shrink the step
        "line_search_steps": COUNT, "critic_epochs": COUNT, "critic_minibatch_size": COUNT,
    }


# Env family -> config changes and run defaults (num_envs, total_steps).
PRESETS: dict[Family, dict[str, Any]] = {
    "atari": {"num_steps": 512, "num_envs": 8, "total_steps": 10_000_000},
    # The defaults with observation and reward normalization.
    "mujoco": {"normalize_obs": True, "normalize_reward": True, "num_envs": 1, "total_steps": 1_000_000},
    "other": {"num_steps": 512, "num_envs": 2, "total_steps": 100_000},
}


def conjugate_gradient(matvec: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iters: int,
                       tolerance: float = 1e-10) -> torch.Tensor:
    """Approximately solve ``A x = b`` for symmetric positive definite ``A`` given only ``v -> A v``."""
    x = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    rr = r @ r
    for _ in range(iters):
        if rr < tolerance:
            break
        Ap = matvec(p)
        alpha = rr / (p @ Ap)
        x += alpha * p
        r -= alpha * Ap
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def flat_grad(y: torch.Tensor, params: list[torch.nn.Parameter], create_graph: bool = False) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(y, params, create_graph=create_graph)])


class TRPO(PolicyAgent):
    """Natural policy gradient in a KL trust region; separate critic regression."""

    config_class = TRPOConfig

    def __init__(self, config: TRPOConfig, obs_space, action_space, device="cpu", total_steps=1_000_000, seed=None):
        super().__init__(config, obs_space, action_space, device, total_steps, seed, shared=False,
                         normalize_obs=config.normalize_obs)
        self.actor_params = self.net.actor_parameters()
        self.critic_optimizer = make_adam(self.net.critic_parameters(), config.learning_rate, self.device)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"critic": self.critic_optimizer}

    def update(self, rollout: RolloutBatch) -> dict[str, float]:
        c = self.config
        obs, actions = rollout.obs, rollout.actions
        advantages = rollout.advantages
        if c.normalize_advantage:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        with torch.no_grad():
            # frozen: a Gaussian's log_std is a view of the live parameter, and the line search's KL would compare
            # each candidate's log std with itself
            old_dist = frozen(self.net.distribution(obs))

        def surrogate(dist) -> torch.Tensor:
            """E[pi(a|s) / pi_old(a|s) A]: the objective whose gradient at pi_old is the policy gradient."""
            return ((dist.log_prob(actions) - rollout.log_probs).exp() * advantages).mean()

        def fisher_vector_product(v: torch.Tensor) -> torch.Tensor:
            # F v = grad((grad KL) . v): the Hessian of the KL at pi_old, by double backprop.
            kl = kl_divergence(old_dist, self.net.distribution(obs)).mean()
            kl_grad = flat_grad(kl, self.actor_params, create_graph=True)
            return flat_grad(kl_grad @ v, self.actor_params) + c.cg_damping * v

        objective = surrogate(self.net.distribution(obs))
        gradient = flat_grad(objective, self.actor_params)
        direction = conjugate_gradient(fisher_vector_product, gradient, c.cg_iters)
        # The largest step along the direction whose quadratic KL estimate is max_kl: 0.5 s^T F s = max_kl.
        step_size = math.sqrt(2 * c.max_kl / max(float(direction @ fisher_vector_product(direction)), 1e-12))
        full_step = step_size * direction

        old_params = torch.cat([p.detach().reshape(-1) for p in self.actor_params])
        accepted, kl, improvement, fraction = False, 0.0, 0.0, 1.0
        for i in range(c.line_search_steps):
            fraction = c.line_search_shrink ** i
            self._set_actor(old_params + fraction * full_step)
            with torch.no_grad():
                new_dist = self.net.distribution(obs)
                kl = float(kl_divergence(old_dist, new_dist).mean())
                improvement = float(surrogate(new_dist) - objective)
            if kl <= c.max_kl and improvement > 0:
                accepted = True
                break
        if not accepted:
            self._set_actor(old_params)

        lr = self.anneal_learning_rate(self.critic_optimizer)
        value_losses = []
        for _ in range(c.critic_epochs):
            for mb in minibatches(rollout, c.critic_minibatch_size, self.generator):
                value_loss = (self.net.value(mb.obs) - mb.returns).pow(2).mean()
                optimizer_step(self.critic_optimizer, value_loss, self.net.critic_parameters(), c.max_grad_norm)
                value_losses.append(value_loss.item())
        self.updates += 1
        return {"losses/policy_objective": objective.item(), "losses/kl": kl if accepted else 0.0,
                "losses/improvement": improvement if accepted else 0.0, "losses/step_fraction": fraction,
                "losses/line_search_accepted": float(accepted), "losses/value_loss": sum(value_losses) / len(value_losses),
                "losses/explained_variance": self.explained_variance(rollout.values, rollout.returns),
                "charts/learning_rate": lr}

    def _set_actor(self, flat: torch.Tensor) -> None:
        offset = 0
        with torch.no_grad():
            for p in self.actor_params:
                p.copy_(flat[offset:offset + p.numel()].view_as(p))
                offset += p.numel()
