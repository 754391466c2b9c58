"""What every agent is: a learner (``update``) that can also act (``act``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlkit.distributed import all_reduce_gradients
from rlkit.errors import UserError


@dataclass
class ReplayConfig:
    """Fields of every agent that learns from replay; :class:`rlkit.sources.ReplaySource` reads them."""

    buffer_size: int = 1_000_000
    """Replay capacity in transitions."""
    batch_size: int = 256
    """Transitions per update."""
    gamma: float = 0.99
    """Discount factor."""
    learning_starts: int = 25_000
    """Env steps collected before the first update."""
    train_frequency: int = 1
    """Env steps between training phases."""
    gradient_steps: int = 1
    """Updates in each training phase (updates per env step = gradient_steps / train_frequency)."""


class Agent(ABC):
    """Base class of all agents. It knows nothing about the loop that drives it.

    Subclasses set ``config_class`` and ``action_spaces`` and implement ``act``, ``update``, ``state_dict`` and
    ``load_state_dict``.
    """

    config_class: ClassVar[type]
    action_spaces: ClassVar[tuple[type[gym.Space], ...]]
    """The action space classes this agent can act in."""
    source_kind: ClassVar[str] = "replay"
    data_parallel: ClassVar[bool] = False

    def seed_evaluation(self, seed: int) -> None:
        pass

    def __init__(self, config: Any, obs_space: gym.Space, action_space: gym.Space, device: str | torch.device):
        self.check_spaces(obs_space, action_space)
        self.config = config
        self.obs_space, self.action_space = obs_space, action_space
        self.device = torch.device(device)

    @classmethod
    def check_spaces(cls, obs_space: gym.Space, action_space: gym.Space) -> None:
        """Raise a :class:`UserError` naming the problem if this agent cannot act in ``action_space``."""
        if not isinstance(action_space, cls.action_spaces):
            wanted = " or ".join(space.__name__ for space in cls.action_spaces)
            from rlkit.agents import AGENTS  # the registry imports this module

            fitting = [name for name, spec in AGENTS.items() if isinstance(action_space, spec.agent_class.action_spaces)]
            raise UserError(
                f"{cls.__name__} needs a {wanted} action space but this env has {action_space}: "
                f"use an agent for {type(action_space).__name__} actions ({', '.join(fitting) or 'none yet'})"
            )
        if not isinstance(obs_space, gym.spaces.Box):
            raise UserError(f"{cls.__name__} needs array observations (a Box space), this env has {obs_space}")

    @abstractmethod
    def act(self, obs: np.ndarray, explore: bool = False, deterministic: bool = True) -> np.ndarray:
        """Actions for a batch of observations. ``explore`` selects the behaviour policy used in training;
        otherwise ``deterministic`` picks the evaluation policy's mode (``False``: sample from it)."""

    @abstractmethod
    def update(self, batch: Any) -> dict[str, float]:
        """One learning step on ``batch``; returns metrics named like TensorBoard tags (``losses/td_loss``)."""

    def episode_start(self, mask: np.ndarray) -> None:
        """Called with a mask of sub-envs that start a new training episode. Most agents ignore it."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Networks, optimizer states and counters, as tensors and plain data."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


def optimizer_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, params: Any, max_grad_norm: float) -> float:
    """zero_grad, backward, clip the global gradient norm (if > 0) and step; returns the norm before clipping.

    Under torchrun the gradients are first averaged over the processes (synchronous data-parallel SGD), so every
    process takes the same step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for p in params if p.grad is not None]
    all_reduce_gradients(params)
    norm = nn.utils.get_total_norm([p.grad for p in params])
    if 0 < max_grad_norm < norm:  # scale only when needed: the multiply costs ~5% of a CPU update
        nn.utils.clip_grads_with_norm_(params, max_grad_norm, norm)
    optimizer.step()
    return float(norm)


@torch.no_grad()
def polyak_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """``target <- (1 - tau) target + tau online`` for every parameter (a copy when tau = 1)."""
    target_params, online_params = list(target.parameters()), list(online.parameters())
    torch._foreach_lerp_(target_params, online_params, tau)


def make_adam(params: Any, lr: float, device: torch.device, **kwargs: Any) -> torch.optim.Adam:
    """Adam with the fused kernel where PyTorch has one (CPU and CUDA): one pass over all parameters per step."""
    fused = device.type in ("cpu", "cuda")
    return torch.optim.Adam(params, lr=lr, fused=fused or None, **kwargs)


def linear_schedule(start: float, end: float, duration: int, t: int) -> float:
    """``start`` at t = 0, moving linearly to ``end`` at t = ``duration`` and staying there."""
    if duration <= 0:
        return end
    return start + (end - start) * min(1.0, t / duration)
