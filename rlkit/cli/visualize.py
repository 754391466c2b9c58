"""Visualizations of a trained discriminator (assignment 5c), each written as a PNG grid (the methods:
:mod:`rlkit.analysis.visualize`). Both discriminators the assignment compares are read: a ``--net discriminator``
classifier run (trained alone) and a ``--net acgan`` run (its critic, trained with the generator; its class head
is the classifier)::

    python -m rlkit.cli.visualize perturb runs/cifar10__discriminator__1__... --epsilon 0.03
    python -m rlkit.cli.visualize perturb RUN_DIR --from-noise --steps 10    # noise images pushed toward a class
    python -m rlkit.cli.visualize class-max RUN_DIR
    python -m rlkit.cli.visualize feature-max RUN_DIR --layers 4 8
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlkit.analysis.images import save_grid
from rlkit.analysis.visualize import PixelClassifier, class_max, feature_max, perturb
from rlkit.data.transforms import STATS, Pad
from rlkit.errors import UserError, run_command
from rlkit.jobs import NETS, get_task
from rlkit.jobs import load_run as load_job_run
from rlkit.jobs.gan import GAN_SIDE
from rlkit.config import whole_number


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
    """The discriminator of a ``--net discriminator`` classifier run or of a ``--net acgan`` run (its critic),
    rebuilt by its job, and the run's test set at the size the discriminator saw."""
    job, checkpoint = load_job_run(path)
    net = checkpoint.get("settings", {}).get("net")
    if (job.kind, net) not in (("classifier", "discriminator"), ("gan", "acgan")):
        what = f"a {job.kind} run of net {net!r}" if net else f"an {job.kind} run" if job.kind[0] in "aeiou" else (
            f"a {job.kind} run")
        raise UserError(f"{path} holds {what}; the visualizations read the GAN's "
                        "discriminator: a run of python train.py --task cifar10 --net discriminator (trained alone) "
                        "or --net acgan (trained with the generator)")
    trained = job.rebuild(checkpoint, device, data_dir)
    images = torch.from_numpy(trained.test.images)
    channels = images.shape[1]
    if job.kind == "gan":  # the critic sees [-1, 1] images, padded to its side
        discriminator, side = trained.learner.discriminator, GAN_SIDE
        mean, std = (0.5,) * channels, (0.5,) * channels
        device_of = trained.learner.device
    else:
        if trained.config.input_size:
            raise UserError("this run resized its images (--input-size): the visualizations need the native size")
        discriminator, side = trained.learner.model.discriminator, NETS["discriminator"].pad_to
        mean, std = STATS[get_task(trained.settings.task).dataset]
        device_of = trained.device
    model = PixelClassifier(discriminator, mean, std).to(device_of).eval()
    if images.shape[-1] < side:  # trained on padded images (28x28 digits -> 32x32), as both jobs do
        images = Pad(side)(images)
    return LoadedRun(model, images, torch.from_numpy(trained.test.labels.astype(np.int64)), trained.test.classes,
                     device_of)


def _pixels(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    return images.to(device, torch.float32) / 255.0


def _perturb_noise(run: LoadedRun, args: argparse.Namespace, out_dir: Path, generator: torch.Generator
                   ) -> dict[str, Any]:
    """Uniform noise images, each pushed toward a class by signed-gradient steps (targeted FGSM, iterated)."""
    shape = (args.images, *run.images.shape[1:])
    x = torch.rand(shape, generator=generator).to(run.device)
    target = (torch.arange(args.images) % len(run.classes)).to(run.device)
    result = perturb(run.model, x, target, args.epsilon, args.steps, args.step_size, target=target)
    stretched = (result.images - x) / max(2 * args.epsilon, 1e-12) + 0.5
    path = save_grid(out_dir / "perturb_noise.png", torch.cat([x, result.images, stretched]), nrow=10,
                     value_range=(0.0, 1.0))
    print(f"noise images given their target class: {result.accuracy_before:.1%} -> {result.accuracy_after:.1%} "
          f"({args.images} images, epsilon {args.epsilon:.4f}, {args.steps} step(s); chance {1 / len(run.classes):.1%})")
    print(f"{path}: noise, perturbed toward classes {', '.join(run.classes[:10])}..., perturbation "
          f"x{1 / max(2 * args.epsilon, 1e-12):.0f}")
    return {"target_accuracy_before": result.accuracy_before, "target_accuracy_after": result.accuracy_after,
            "path": str(path)}


# ---------------------------------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rlkit.cli.visualize", description=__doc__,
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
                         help="a --net discriminator classifier run or a --net acgan run (its directory or "
                              "checkpoint.pt)")
        sub.add_argument("--out-dir", type=Path, help="where the PNG goes (default: the run directory)")
        sub.add_argument("--data-dir", help="folder of the test set (default: the one the run trained on)")
        sub.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
        sub.add_argument("--seed", type=whole_number, default=0, help="picks the test images (default: 0)")
        if command != "perturb":
            sub.add_argument("--steps", type=whole_number, default=200, help="gradient-ascent steps (default: 200)")
            sub.add_argument("--lr", type=float, default=0.1, help="gradient-ascent step size (default: 0.1)")
            sub.add_argument("--l2", type=float, default=1e-3, help="pull toward gray per step (default: 0.001)")
    perturb_sub = subs["perturb"]
    perturb_sub.add_argument("--images", type=whole_number, default=100, help="test images to perturb (default: 100)")
    perturb_sub.add_argument("--epsilon", type=float, default=8 / 255,
                             help="largest change of a pixel, in [0, 1] units (default: 8/255)")
    perturb_sub.add_argument("--steps", type=whole_number, default=1, help="signed-gradient steps; 1 is FGSM (default: 1)")
    perturb_sub.add_argument("--from-noise", action="store_true",
                             help="start from uniform noise images instead of test images and push each toward a "
                                  "class (image i toward class i mod K; the earlier edition's variant); prints how "
                                  "many the discriminator gives their target class before and after")
    perturb_sub.add_argument("--step-size", type=float, default=None,
                             help="per step, in [0, 1] units (default: epsilon for one step, else 2.5 epsilon/steps)")
    subs["feature-max"].add_argument("--layers", type=whole_number, nargs="+", default=[4, 8], metavar="L",
                                     help="convolution layers, numbered 1..8 (default: 4 8)")
    subs["feature-max"].add_argument("--channels", type=whole_number, default=16,
                                     help="channels per layer, the first ones (default: 16)")
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run one visualization command; returns what it printed, as a dict."""
    args = build_parser().parse_args(argv)
    if args.steps < 1:
        raise UserError(f"--steps must be at least 1, got {args.steps}")
    run = load_run(args.run, args.device, args.data_dir)
    out_dir = args.out_dir or (args.run if args.run.is_dir() else args.run.parent)
    if args.command == "perturb":
        if not 1 <= args.images <= len(run.labels):
            raise UserError(f"--images must be in 1..{len(run.labels)}, got {args.images}")
        generator = torch.Generator().manual_seed(args.seed)
        if args.from_noise:
            return _perturb_noise(run, args, out_dir, generator)
        rows = torch.randperm(len(run.labels), generator=generator)[:args.images]
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
