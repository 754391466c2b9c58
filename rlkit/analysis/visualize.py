"""What a trained classifier has learned, seen through its input gradients (assignment 5c), each written as a PNG grid:

* ``perturb``: adversarial examples. Signed-gradient steps (FGSM, Goodfellow et al. 2015; iterated, Kurakin et al.
  2017) push each real image away from its label within an L-infinity ball of radius epsilon; the accuracy falls
  toward chance while the images look unchanged.
* ``class-max``: gradient ascent on one class logit, from the data set's mean image.
* ``feature-max``: gradient ascent on the mean activation of one channel of a convolution layer, per image.

The functions take a model and tensors (images in ``bounds``, [0, 1] pixels by default); the command line rebuilds
the model from a run directory::

    python -m rlkit.analysis.visualize perturb runs/cifar10__discriminator__1__... --epsilon 0.03
    python -m rlkit.analysis.visualize class-max RUN_DIR
    python -m rlkit.analysis.visualize feature-max RUN_DIR --layers 4 8
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlkit.data.transforms import STATS, Pad
from rlkit.errors import UserError, run_command
from rlkit.jobs import NETS, get_task
from rlkit.jobs import load_run as load_job_run


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


@dataclass
class LoadedRun:
    """A trained classifier and its test set, in [0, 1] pixels."""

    model: PixelClassifier
    images: torch.Tensor
    """uint8 (N, C, H, W) test images, on the CPU."""
    labels: torch.Tensor
    classes: tuple[str, ...]
    device: torch.device


def load_run(path: str | Path, device: str = "auto", data_dir: str | None = None) -> LoadedRun:
    """The discriminator of a ``--net discriminator`` classifier run, rebuilt by its job, and the run's test set."""
    job, checkpoint = load_job_run(path)
    net = checkpoint.get("settings", {}).get("net")
    if job.kind != "classifier" or net != "discriminator":
        raise UserError(f"{path} holds a {job.kind} run of net {net!r}; the visualizations read classifier runs of "
                        "the GAN discriminator: train one with python train.py --task cifar10 --net discriminator")
    trained = job.rebuild(checkpoint, device, data_dir)
    if trained.config.input_size:
        raise UserError("this run resized its images (--input-size): the visualizations need the native size")
    discriminator = trained.learner.model.discriminator
    model = PixelClassifier(discriminator, *STATS[get_task(trained.settings.task).dataset]).to(trained.device).eval()
    images = torch.from_numpy(trained.test.images)
    side = NETS["discriminator"].pad_to
    if images.shape[-1] < side:  # trained on padded images (28x28 digits -> 32x32), as the classifier job does
        images = Pad(side)(images)
    return LoadedRun(model, images, torch.from_numpy(trained.test.labels.astype(np.int64)), trained.test.classes,
                     trained.device)


def _pixels(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    return images.to(device, torch.float32) / 255.0


# ---------------------------------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rlkit.analysis.visualize", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    texts = {
        "perturb": "adversarially perturbed test images; prints the accuracy before and after",
        "class-max": "one image per class maximizing its logit, from the test set's mean image",
        "feature-max": "images maximizing single channels of two (or more) layers, from the mean image",
    }
    subs = {}
    for command, text in texts.items():
        sub = subs[command] = commands.add_parser(command, help=text, description=text)
        sub.add_argument("run", type=Path, metavar="RUN_DIR_OR_CHECKPOINT",
                         help="a --net discriminator classifier run (its directory or checkpoint.pt)")
        sub.add_argument("--out-dir", type=Path, help="where the PNG goes (default: the run directory)")
        sub.add_argument("--data-dir", help="folder of the test set (default: the one the run trained on)")
        sub.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
        sub.add_argument("--seed", type=int, default=0, help="picks the test images (default: 0)")
        if command != "perturb":
            sub.add_argument("--steps", type=int, default=200, help="gradient-ascent steps (default: 200)")
            sub.add_argument("--lr", type=float, default=0.1, help="gradient-ascent step size (default: 0.1)")
            sub.add_argument("--l2", type=float, default=1e-3, help="pull toward gray per step (default: 0.001)")
    perturb_sub = subs["perturb"]
    perturb_sub.add_argument("--images", type=int, default=100, help="test images to perturb (default: 100)")
    perturb_sub.add_argument("--epsilon", type=float, default=8 / 255,
                             help="largest change of a pixel, in [0, 1] units (default: 8/255)")
    perturb_sub.add_argument("--steps", type=int, default=1, help="signed-gradient steps; 1 is FGSM (default: 1)")
    perturb_sub.add_argument("--step-size", type=float, default=None,
                             help="per step, in [0, 1] units (default: epsilon for one step, else 2.5 epsilon/steps)")
    subs["feature-max"].add_argument("--layers", type=int, nargs="+", default=[4, 8], metavar="L",
                                     help="convolution layers, numbered 1..8 (default: 4 8)")
    subs["feature-max"].add_argument("--channels", type=int, default=16,
                                     help="channels per layer, the first ones (default: 16)")
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run one visualization command; returns what it printed, as a dict."""
    args = build_parser().parse_args(argv)
    if args.steps < 1:
        raise UserError(f"--steps must be at least 1, got {args.steps}")
    run = load_run(args.run, args.device, args.data_dir)
    out_dir = args.out_dir or (args.run if args.run.is_dir() else args.run.parent)
    from rlkit.analysis.images import save_grid

    if args.command == "perturb":
        if not 1 <= args.images <= len(run.labels):
            raise UserError(f"--images must be in 1..{len(run.labels)}, got {args.images}")
        rows = torch.randperm(len(run.labels), generator=torch.Generator().manual_seed(args.seed))[:args.images]
        x, y = _pixels(run.images[rows], run.device), run.labels[rows].to(run.device)
        result = perturb(run.model, x, y, args.epsilon, args.steps, args.step_size)
        # Originals, perturbed, and the perturbation stretched to the full range (invisible otherwise).
        stretched = (result.images - x) / max(2 * args.epsilon, 1e-12) + 0.5
        path = save_grid(out_dir / "perturb.png", torch.cat([x, result.images, stretched]), nrow=10,
                         value_range=(0.0, 1.0))
        print(f"accuracy on {len(y)} test images: {result.accuracy_before:.1%} -> {result.accuracy_after:.1%} "
              f"(epsilon {args.epsilon:.4f}, {args.steps} step(s); chance {1 / len(run.classes):.1%})")
        print(f"{path}: originals, perturbed images, perturbation x{1 / max(2 * args.epsilon, 1e-12):.0f}")
        return {"accuracy_before": result.accuracy_before, "accuracy_after": result.accuracy_after,
                "path": str(path)}

    # NumPy averages the uint8 images without a float copy of the whole test set.
    mean_image = torch.from_numpy(run.images.numpy().mean(0, dtype=np.float32) / 255.0).to(run.device)
    if args.command == "class-max":
        classes = torch.arange(len(run.classes), device=run.device)
        result = class_max(run.model, mean_image, classes, args.steps, args.lr, args.l2)
        with torch.no_grad():
            hit = (run.model(result.images).argmax(1) == classes).float().mean().item()
        path = save_grid(out_dir / "class_max.png", result.images, nrow=len(classes), value_range=(0.0, 1.0))
        print(f"{path}: one image per class ({', '.join(run.classes)}); mean target logit "
              f"{result.before.mean():.2f} -> {result.after.mean():.2f}, classified as the target: {hit:.0%}")
        return {"logit_before": result.before.mean().item(), "logit_after": result.after.mean().item(),
                "target_accuracy": hit, "path": str(path)}

    blocks = run.model.discriminator.blocks
    width = blocks[0].conv.out_channels
    if not all(1 <= layer <= len(blocks) for layer in args.layers) or not 1 <= args.channels <= width:
        raise UserError(f"--layers are numbered 1..{len(blocks)} and --channels must be in 1..{width}, got layers "
                        f"{args.layers} and {args.channels} channels")
    out: dict[str, Any] = {"paths": []}
    for layer in args.layers:
        result = feature_max(lambda x, layer=layer: run.model.features(x, [layer])[layer], mean_image,
                             range(args.channels), args.steps, args.lr, args.l2)
        path = save_grid(out_dir / f"feature_max_layer{layer}.png", result.images, nrow=8, value_range=(0.0, 1.0))
        print(f"{path}: channels 0..{args.channels - 1} of layer {layer}; mean activation "
              f"{result.before.mean():.3f} -> {result.after.mean():.3f}")
        out["paths"].append(str(path))
        out[f"activation_layer{layer}"] = result.after.mean().item()
    return out


if __name__ == "__main__":
    run_command(main)
