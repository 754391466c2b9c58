"""What a trained classifier has learned, seen through its input gradients (assignment 5c), each written as a PNG grid:

* ``perturb``: adversarial examples. Signed-gradient steps (FGSM, Goodfellow et al. 2015; iterated, Kurakin et al.
  2017) push each real image away from its label within an L-infinity ball of radius epsilon; the accuracy falls
  toward chance while the images look unchanged.
* ``class-max``: gradient ascent on one class logit, from the data set's mean image.
* ``feature-max``: gradient ascent on the mean activation of one channel of a convolution layer, per image.

The functions take a model and tensors (images in ``bounds``, [0, 1] pixels by default); the command line
:mod:`rlkit.cli.visualize` rebuilds the model from a run directory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class Perturbation(NamedTuple):
    """What :func:`perturb` returns."""

    images: torch.Tensor
    """The perturbed images, same shape as the input."""
    accuracy_before: float
    accuracy_after: float


class Ascent(NamedTuple):
    """What :func:`class_max` and :func:`feature_max` return."""

    images: torch.Tensor
    """(N, C, H, W) images after the ascent."""
    before: torch.Tensor
    """(N,) each image's objective at the start."""
    after: torch.Tensor
    """(N,) each image's objective at the end."""


class _EvalMode:
    """Put a module in eval mode (batch norm statistics fixed, dropout off) for the block; restore after."""

    def __init__(self, module: nn.Module):
        self.module, self.was_training = module, module.training

    def __enter__(self) -> None:
        self.module.eval()

    def __exit__(self, *exc: Any) -> None:
        self.module.train(self.was_training)


def _accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(images).argmax(1) == labels).float().mean().item()


def perturb(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, epsilon: float = 8 / 255, steps: int = 1,
            step_size: float | None = None, bounds: tuple[float, float] = (0.0, 1.0),
            target: torch.Tensor | None = None) -> Perturbation:
    """Adversarial versions of ``images`` (B, C, H, W) for ``model`` (images -> logits), inside
    ``|x' - x|_inf <= epsilon`` and ``bounds``.

    Each step moves every pixel by ``step_size`` in the sign of the loss gradient: ``x <- x + a sign(grad CE(f(x),
    y))`` away from the true labels ``y``, or ``x <- x - a sign(grad CE(f(x), t))`` toward ``target`` labels t
    (the course's variant); then projects back into the ball and the valid range. ``steps=1`` with the default
    step is FGSM; the default step of an iterated attack is ``2.5 epsilon / steps`` (Madry et al. 2018), so the
    iterates can reach the ball's surface and move along it.
    """
    if epsilon < 0 or steps < 1:
        raise ValueError(f"epsilon must be >= 0 and steps >= 1, got {epsilon} and {steps}")
    step = step_size if step_size is not None else (epsilon if steps == 1 else 2.5 * epsilon / steps)
    low, high = bounds
    with _EvalMode(model):
        before = _accuracy(model, images, labels)
        x = images.detach().clone()
        for _ in range(steps):
            x.requires_grad_(True)
            aim, sign = (labels, 1.0) if target is None else (target, -1.0)
            # Summed, so each image's gradient is its own; only the sign is used anyway.
            (grad,) = torch.autograd.grad(F.cross_entropy(model(x), aim, reduction="sum"), x)
            x = x.detach() + sign * step * grad.sign()
            x = torch.min(torch.max(x, images - epsilon), images + epsilon).clamp(low, high)
        after = _accuracy(model, x, labels)
    return Perturbation(x, before, after)


def gradient_ascent(objective: Callable[[torch.Tensor], torch.Tensor], start: torch.Tensor, steps: int = 200,
                    lr: float = 0.1, l2: float = 1e-3, bounds: tuple[float, float] = (0.0, 1.0)) -> Ascent:
    """Maximize ``objective`` (images (N, ...) -> per-image scores (N,)) from ``start`` by plain gradient ascent:
    ``x <- clamp(x + lr (grad score - l2 (x - c)), bounds)``, with ``c`` the middle of the range. The L2 term
    pulls toward gray and, with the clamp, keeps the image from running off to extreme, noisy pixels (the course
    decays pixels toward the middle of its [-1, 1] range the same way)."""
    low, high = bounds
    centre = (low + high) / 2
    x = start.detach().clone()
    before = objective(x).detach()
    for _ in range(steps):
        x.requires_grad_(True)
        (grad,) = torch.autograd.grad(objective(x).sum(), x)
        x = (x.detach() + lr * (grad - l2 * (x.detach() - centre))).clamp(low, high)
    with torch.no_grad():
        after = objective(x)
    return Ascent(x, before, after)


def _batch(start: torch.Tensor, n: int) -> torch.Tensor:
    return start.expand(n, *start.shape) if start.ndim == 3 else start


def class_max(model: nn.Module, start: torch.Tensor, classes: torch.Tensor, steps: int = 200, lr: float = 0.1,
              l2: float = 1e-3, bounds: tuple[float, float] = (0.0, 1.0)) -> Ascent:
    """Images that maximize logit ``classes[i]`` of ``model`` for image i, from ``start`` (C, H, W), shared by all,
    or (N, C, H, W); see :func:`gradient_ascent`."""
    rows = torch.arange(len(classes), device=classes.device)
    with _EvalMode(model):
        return gradient_ascent(lambda x: model(x)[rows, classes], _batch(start, len(classes)), steps, lr, l2, bounds)


def feature_max(feature_fn: Callable[[torch.Tensor], torch.Tensor], start: torch.Tensor, channels: Sequence[int],
                steps: int = 200, lr: float = 0.1, l2: float = 1e-3, bounds: tuple[float, float] = (0.0, 1.0)
                ) -> Ascent:
    """Images that maximize the mean activation of channel ``channels[i]`` for image i, where ``feature_fn`` maps
    images to one layer's activations (N, C, H, W); from ``start`` as in :func:`class_max`. Put the network in eval
    mode first if it has batch norm or dropout."""
    index = torch.as_tensor(list(channels), device=start.device)
    rows = torch.arange(len(index), device=start.device)
    return gradient_ascent(lambda x: feature_fn(x)[rows, index].flatten(1).mean(1), _batch(start, len(index)),
                           steps, lr, l2, bounds)


# ---------------------------------------------------------------------------------------------------- from a run
class PixelClassifier(nn.Module):
    """A discriminator trained on normalized images, seen from [0, 1] pixels: ``forward`` gives class logits,
    ``features`` the activations of its numbered layers; the normalization is part of the function, so every
    gradient above is with respect to pixels."""

    def __init__(self, discriminator: nn.Module, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.discriminator = discriminator
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def features(self, x: torch.Tensor, layers: Iterable[int]) -> dict[int, torch.Tensor]:
        """The discriminator's activations after the numbered blocks ``layers``."""
        return self.discriminator.features((x - self.mean) / self.std, layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.discriminator((x - self.mean) / self.std)[1]
