"""Optimization shared by every learner: one optimizer step, Adam, Polyak averaging and a linear schedule."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from rlkit.distributed import all_reduce_gradients
from rlkit.errors import UserError


def optimizer_step(
    optimizer: torch.optim.Optimizer,
    loss: torch.Tensor,
    params: Iterable[nn.Parameter],
    max_grad_norm: float = 0.0,
    *,
    only_params: bool = False,
    apply_to: Iterable[nn.Parameter] | None = None,
    averaged: bool = False,
) -> float:
    """zero_grad, backward, clip the global gradient norm (if > 0) and step; returns the norm before clipping.

    Under torchrun the gradients are first averaged over the processes (synchronous data-parallel SGD), so every
    process takes the same step, unless ``averaged`` says that was done in backward (DDP).

    Args:
        params: the parameters whose gradients are clipped (those the loss was computed with).
        only_params: backpropagate into ``params`` only (a GAN's generator step needs no critic gradients).
        apply_to: hogwild (A3C): ``params`` are a worker's private copy of these shared parameters; the shared
            ones are stepped with the copy's gradients. ``optimizer`` holds the shared ones.
        averaged: the gradients are already averaged over the processes (a DDP model): reducing them again would
            only repeat the communication.
    """
    params = list(params)
    optimizer.zero_grad(set_to_none=True)
    for p in params:  # with apply_to the gradients land on the copy, which the optimizer does not know
        p.grad = None
    loss.backward(inputs=params if only_params else None)
    with_grad = [p for p in params if p.grad is not None]
    if not averaged:
        all_reduce_gradients(with_grad)
    norm = nn.utils.get_total_norm([p.grad for p in with_grad])
    if 0 < max_grad_norm < norm:  # scale only when needed: the multiply costs ~5% of a CPU update
        nn.utils.clip_grads_with_norm_(with_grad, max_grad_norm, norm)
    if apply_to is not None:
        # A shared parameter's .grad is private to this process: point it at the copy's gradient.
        for shared, local in zip(apply_to, params, strict=True):
            shared.grad = local.grad
    optimizer.step()
    return float(norm)


def make_adam(params: Any, lr: float, device: torch.device, **kwargs: Any) -> torch.optim.Adam:
    """Adam with the fused kernel where PyTorch has one (CPU and CUDA): one pass over all parameters per step."""
    fused = device.type in ("cpu", "cuda")
    return torch.optim.Adam(params, lr=lr, fused=fused or None, **kwargs)


def check_optimizer_states(owner: Any) -> None:
    """Every state tensor of every optimizer among ``owner``'s attributes has its parameter's shape (``step``: one
    value; L-BFGS: one value or a flat vector over all the parameters). ``load_state_dict`` copies a loaded state
    as it is, and the fused Adam kernel trusts the shapes: a crafted checkpoint whose ``exp_avg`` is shorter than
    its parameter makes the next step write out of bounds (heap corruption, not an exception). Call this after loading, before any step.

    Raises:
        UserError: naming the optimizer, the state and both shapes.
    """
    for name, optimizer in vars(owner).items():
        if not isinstance(optimizer, torch.optim.Optimizer):
            continue
        params = [p for group in optimizer.param_groups for p in group["params"]]
        # L-BFGS keeps its state on the first parameter: flat vectors over all of them (and lists of those), scalars
        flat = sum(p.numel() for p in params) if isinstance(optimizer, torch.optim.LBFGS) else 0
        for index, param in enumerate(params):
            for key, entry in optimizer.state.get(param, {}).items():
                for value in entry if flat and isinstance(entry, list) else [entry]:
                    if not isinstance(value, torch.Tensor):
                        continue
                    if flat:
                        fits, wanted = value.numel() == 1 or value.shape == (flat,), f"one value or shape ({flat},)"
                    elif key == "step":
                        fits, wanted = value.numel() == 1, "one value"
                    else:
                        fits, wanted = value.shape == param.shape, f"shape {tuple(param.shape)}"
                    if not fits:
                        raise UserError(f"the checkpoint's {name} state does not fit its parameters ({key} of "
                                        f"parameter {index} has shape {tuple(value.shape)}, not {wanted}): pass a "
                                        "checkpoint written by train.py")


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


@torch.no_grad()
def polyak_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """``target <- (1 - tau) target + tau online`` for every parameter (a copy when tau = 1)."""
    target_params, online_params = list(target.parameters()), list(online.parameters())
    torch._foreach_lerp_(target_params, online_params, tau)


def linear_schedule(start: float, end: float, duration: int, t: int) -> float:
    """``start`` at t = 0, moving linearly to ``end`` at t = ``duration`` and staying there."""
    if duration <= 0:
        return end
    return start + (end - start) * min(1.0, t / duration)
