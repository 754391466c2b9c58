"""Hessian-free optimization (Martens 2010, "Deep learning via Hessian-free optimization").

Each step minimizes the damped quadratic model of the loss around the current parameters θ,

    q(p) = f(θ) + gᵀp + ½ pᵀ (G + λI) p,

by conjugate gradient, where G = Jᵀ H_L J is the Gauss-Newton matrix: J the Jacobian of the net's outputs with
respect to θ and H_L the Hessian of the loss with respect to those outputs. G is never formed: CG only needs
products G v, computed as J v by one forward-mode pass (``torch.func.jvp``), H_L (J v) in closed form, then
Jᵀ (H_L J v) by one reverse-mode pass (``torch.func.vjp``). G is positive semi-definite where the Hessian need not
be, so CG always sees a convex model.

Martens' details, all here: CG starts from the previous step's solution times a decay; its iterates are kept at a
geometric schedule and the step backtracks to the one with the lowest loss; λ follows the Levenberg-Marquardt rule
on the reduction ratio ρ; an optional Armijo line search scales the chosen step (Martens and Sutskever 2012).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jvp, vjp

Vector = torch.Tensor
"""A flat vector over all the optimized parameters."""


# ---------------------------------------------------------------------------------------------------- output losses
class OutputLoss(Protocol):
    """A loss of the net's outputs, averaged over the cases of a batch, and its Hessian with respect to them."""

    def __call__(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor: ...

    def hessian_product(self, outputs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """H_L u for a direction ``u`` of the outputs' shape (the targets enter the loss linearly: H_L has none)."""
        ...


class SoftmaxCrossEntropy:
    """Cross-entropy of softmax(logits) (B, K); per case H_L = diag(p) - p pᵀ, whatever the label smoothing."""

    def __init__(self, label_smoothing: float = 0.0):
        self.label_smoothing = label_smoothing

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)

    def hessian_product(self, logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        p = logits.softmax(-1)
        return (p * u - p * (p * u).sum(-1, keepdim=True)) / len(logits)


class SigmoidCrossEntropy:
    """Cross-entropy of sigmoid(logits) against targets in [0, 1], summed over units; H_L = diag(p (1 - p))."""

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / len(logits)

    def hessian_product(self, logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        p = logits.sigmoid()
        return p * (1 - p) * u / len(logits)


class SquaredError:
    """½ ||outputs - targets||² summed over units; H_L = I."""

    def __call__(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return 0.5 * (outputs - targets).pow(2).sum() / len(outputs)

    def hessian_product(self, outputs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return u / len(outputs)


# ---------------------------------------------------------------------------------------------------- the pieces
@contextmanager
def fixed_randomness(seed: int, device: torch.device) -> Iterator[None]:
    """Random draws (dropout masks) from ``seed`` inside, the global generators untouched outside: every pass of a
    step over one batch then sees the same function of the parameters."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def module_outputs(model: nn.Module, inputs: torch.Tensor, seed: int | None = None
                   ) -> Callable[[tuple[torch.Tensor, ...]], torch.Tensor]:
    """``params -> model(inputs)`` as a function of the trainable parameters (in ``model.parameters()`` order).

    The buffers are copied at every call, so batch norm uses the batch's statistics without moving its running
    ones; with ``seed`` every call draws the same dropout masks (:func:`fixed_randomness`).
    """
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    buffers = dict(model.named_buffers())

    def outputs(params: tuple[torch.Tensor, ...]) -> torch.Tensor:
        with fixed_randomness(seed, inputs.device) if seed is not None else nullcontext():
            state = {**dict(zip(names, params, strict=True)), **{k: b.clone() for k, b in buffers.items()}}
            return functional_call(model, state, (inputs,))

    return outputs


def gauss_newton_product(outputs: Callable[[tuple[torch.Tensor, ...]], torch.Tensor],
                         params: tuple[torch.Tensor, ...], loss: OutputLoss) -> Callable[[Vector], Vector]:
    """``v -> G v = Jᵀ H_L J v`` at ``params``, for flat vectors ``v``.

    The reverse pass is recorded once and replayed for every product; each product adds one forward-mode pass.
    """
    params = tuple(p.detach() for p in params)
    z, pullback = vjp(outputs, params)
    z = z.detach()

    def product(v: Vector) -> Vector:
        _, jv = jvp(outputs, (params,), (unflatten(v, params),))
        return flatten(pullback(loss.hessian_product(z, jv))[0])

    return product


def conjugate_gradient(A: Callable[[Vector], Vector], b: Vector, x0: Vector, max_iterations: int,
                       tolerance: float = 5e-4, keep_ratio: float = 1.3
                       ) -> tuple[list[tuple[int, Vector, float]], int]:
    """Minimize φ(x) = ½ xᵀAx - bᵀx (that is, solve Ax = b) for symmetric positive definite A, from ``x0``.

    Stops after ``max_iterations`` or on Martens' relative-progress rule: at iteration i, with k = max(10, i/10),
    when φ(x_i) < 0 and φ improved by less than a fraction k·tolerance over the last k iterations.

    Returns:
        (the iterates (i, x_i, φ(x_i)) kept at i = ceil(keep_ratio^j) and the last, and the iterations run).
    """
    keep = {math.ceil(keep_ratio ** j) for j in range(int(math.log(max(max_iterations, 2), keep_ratio)) + 2)}
    x = x0.clone()
    r = b - A(x)
    d, rr = r.clone(), r @ r
    phi = [float(-0.5 * x @ (r + b))]  # φ(x) = ½xᵀ(Ax - b) - ½bᵀx = -½xᵀ(r + b)
    kept: list[tuple[int, Vector, float]] = []
    i = 0
    for i in range(1, max_iterations + 1):
        Ad = A(d)
        curvature = d @ Ad
        if curvature <= 0:  # d = 0 (solved) or rounding: no further step makes progress
            i -= 1
            break
        alpha = rr / curvature
        x = x + alpha * d
        r = r - alpha * Ad
        rr, rr_old = r @ r, rr
        d = r + (rr / rr_old) * d
        phi.append(float(-0.5 * x @ (r + b)))
        if i in keep:
            kept.append((i, x, phi[i]))
        k = max(10, i // 10)
        if i > k and phi[i] < 0 and (phi[i] - phi[i - k]) / phi[i] < k * tolerance:
            break
    if not kept or kept[-1][0] != i:
        kept.append((i, x, phi[i]))
    return kept, i


def flatten(tensors: tuple[torch.Tensor, ...] | list[torch.Tensor]) -> Vector:
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten(v: Vector, like: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return tuple(part.view_as(p) for part, p in zip(v.split([p.numel() for p in like]), like))


def adjust_damping(damping: float, rho: float) -> float:
    """Levenberg-Marquardt: trust the quadratic model less (more damping) when it predicted the loss's change badly
    (ρ < 1/4), more when it predicted it well (ρ > 3/4)."""
    if rho < 0.25:
        return damping * 3 / 2
    if rho > 0.75:
        return damping * 2 / 3
    return damping


# ---------------------------------------------------------------------------------------------------- the optimizer
class HessianFree(torch.optim.Optimizer):
    """Martens' Hessian-free optimizer. Its state (λ, and the last CG solution that warm-starts the next CG) is in
    ``state_dict()``.

    Args:
        params: the parameters to optimize (one group).
        damping: initial λ (Martens 2010: 1).
        max_cg_iterations: CG iterations per step at most (Martens 2010: 250).
        cg_decay: CG starts from the previous solution times this (Martens 2010: 0.95; 0: from zero).
        line_search: scale the chosen step by backtracking until the loss decreases enough (Armijo).
        weight_decay: the objective is the loss plus ½ weight_decay ||θ||² (its Hessian adds weight_decay I).
    """

    def __init__(self, params: list[nn.Parameter], damping: float = 1.0, max_cg_iterations: int = 250,
                 cg_decay: float = 0.95, line_search: bool = True, weight_decay: float = 0.0):
        defaults = dict(damping=damping, max_cg_iterations=max_cg_iterations, cg_decay=cg_decay,
                        line_search=line_search, weight_decay=weight_decay)
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError("HessianFree takes one parameter group")

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor | float],  # type: ignore[override]
             outputs: Callable[[tuple[torch.Tensor, ...]], torch.Tensor], loss: OutputLoss) -> dict[str, float]:
        """One Hessian-free step, with the batch's gradient already in the parameters' ``.grad``.

        Args:
            closure: the batch's loss at the parameters' current values (called with them moved to trial points).
            outputs: ``params -> net outputs`` on the curvature batch (see :func:`module_outputs`).
            loss: the loss of those outputs, for its Hessian.

        Returns:
            the loss before and after, λ before its update, ρ, CG iterations, the chosen iterate and step size.
        """
        group = self.param_groups[0]
        params = group["params"]
        theta = flatten([p.detach() for p in params])
        decay = group["weight_decay"]

        def objective(x: Vector) -> float:  # f(θ + x)
            set_flat(params, theta + x)
            return float(closure()) + 0.5 * decay * float((theta + x) @ (theta + x))

        g = flatten([p.grad if p.grad is not None else torch.zeros_like(p) for p in params]) + decay * theta
        f0 = objective(torch.zeros_like(theta))
        damping = group["damping"]
        with torch.enable_grad():
            G = gauss_newton_product(outputs, tuple(params), loss)
        previous = self.state[params[0]].get("direction")
        x0 = (group["cg_decay"] * flatten([self.state[p]["direction"] for p in params]) if previous is not None
              else torch.zeros_like(theta))
        kept, iterations = conjugate_gradient(lambda v: G(v) + (decay + damping) * v, -g, x0,
                                              group["max_cg_iterations"])
        for p, part in zip(params, unflatten(kept[-1][1], tuple(params))):  # the next step starts from CG's last x
            self.state[p]["direction"] = part.clone()

        # CG backtracking: from the last iterate back, while an earlier one has a lower loss
        chosen, f_new = len(kept) - 1, objective(kept[-1][1])
        while chosen > 0:
            f_earlier = objective(kept[chosen - 1][1])
            if f_earlier >= f_new:
                break
            chosen, f_new = chosen - 1, f_earlier
        _, p_step, phi = kept[chosen]

        # ρ compares the loss's change with the undamped model's: q(p) - q(0) = gᵀp + ½pᵀGp = φ(p) - ½λ||p||²
        predicted = phi - 0.5 * damping * float(p_step @ p_step)
        rho = (f_new - f0) / predicted if predicted < 0 else 0.0  # no decrease predicted: trust the model less
        group["damping"] = adjust_damping(damping, rho)

        step_size = 1.0
        if group["line_search"]:  # Martens and Sutskever 2012: Armijo with c = 0.01, shrinking by 0.8
            slope = float(g @ p_step)
            while f_new > f0 + 0.01 * step_size * slope:
                step_size *= 0.8
                if step_size < 0.8 ** 60:
                    step_size, f_new = 0.0, f0  # no decrease along p: stay (λ has grown)
                    break
                f_new = objective(step_size * p_step)
        set_flat(params, theta + step_size * p_step)
        return {"loss_before": f0, "loss_after": f_new, "damping": damping, "reduction_ratio": rho,
                "cg_iterations": float(iterations), "cg_iterate": float(kept[chosen][0]), "step_size": step_size}


def set_flat(params: list[nn.Parameter], flat: Vector) -> None:
    for p, value in zip(params, unflatten(flat, tuple(params))):
        p.copy_(value)
