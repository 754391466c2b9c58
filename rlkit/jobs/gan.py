"""ACGAN runs (``--task cifar10 --net acgan``) on the shared loop: real images in [-1, 1] from the batch source,
the two-network learner, and an evaluation that writes a sample grid, scores the critic's class head on the test
set and, given a judge (an independently trained classifier run), the class-conditional accuracy of the samples."""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from rlkit.analysis.images import save_animation
from rlkit.data import ArrayDataset, load_dataset
from rlkit.data import transforms as T
from rlkit.errors import UserError
from rlkit.jobs.base import load_learner
from rlkit.jobs.catalog import TaskInfo, get_task
from rlkit.jobs.classifier import ClassifierJob, evaluate_classifier
from rlkit.jobs.supervised import SupervisedJob, SupervisedSettings
from rlkit.jobs.upgrade import read_checkpoint
from rlkit.loop import Loop
from rlkit.runtime import pick_device, prepare_process, seed_everything
from rlkit.sources.batches import ImageBatchSource
from rlkit.supervised.gan import ACGAN, ACGANConfig, class_conditional_accuracy, save_samples

GAN_SIDE = 32
"""The generator's output side; smaller images (28x28 digits) are zero-padded to it."""


PROGRESS_GIF = "samples.gif"
"""The run directory's animation of the sample grids, one frame per evaluation."""


def gan_transforms(task: TaskInfo, channels: int, size: int) -> tuple[T.Compose, T.Compose]:
    """(training, evaluation) pipelines from uint8 images to [-1, 1] at 32x32; training adds the course's crop and
    flip (flips only where they keep the class)."""
    pad = [T.Pad(GAN_SIDE)] if size < GAN_SIDE else []
    to_tanh_range = T.Normalize((0.5,) * channels, (0.5,) * channels)
    augment: list[Any] = [T.RandomCrop(size, 4)] + ([T.RandomHorizontalFlip()] if task.flip else [])
    return T.Compose([T.to_float, *augment, *pad, to_tanh_range]), T.Compose([T.to_float, *pad, to_tanh_range])


def make_judge(run: str | Path, device: torch.device, channels: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Logits of a trained classifier run for generated images in [-1, 1] at 32x32: they are quantized to bytes
    and cropped back to the judge's image size, then go through the judge's own evaluation pipeline.

    The judge should have been trained with the augmentation the GAN saw: the generator learns the augmented
    distribution (digits shifted by the random crop), and a judge that never saw shifts misreads good samples."""
    checkpoint = read_checkpoint(run)
    if checkpoint.get("job") != "classifier":
        raise UserError(f"the judge {run} is a {checkpoint.get('job')!r} run: pass an image classifier run")
    trained = ClassifierJob().rebuild(checkpoint, device=str(device))
    side = trained.test.images.shape[-1]
    if trained.test.images.shape[1] != channels:
        raise UserError(f"the judge {run} classifies {trained.test.images.shape[1]}-channel images, the GAN makes "
                        f"{channels}-channel ones: train a judge on the same task")

    def judge(images: torch.Tensor) -> torch.Tensor:
        top = (images.shape[-1] - side) // 2
        images = images[..., top:top + side, top:top + side]
        pixels = ((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
        return trained.learner.log_probs(trained.eval_transform(pixels.cpu()).to(device))

    return judge


@dataclass
class TrainedGAN:
    learner: ACGAN
    settings: SupervisedSettings
    test: ArrayDataset
    eval_transform: Any


class GANJob(SupervisedJob):
    kind = "gan"
    data_parallel = False

    def add_flags(self, parser: argparse.ArgumentParser, run: argparse._ArgumentGroup) -> None:
        super().add_flags(parser, run)
        run.add_argument("--judge", metavar="RUN_DIR",
                         help="a classifier run (same task) that scores each class's samples at every evaluation")

    def new_settings(self, args: argparse.Namespace) -> SupervisedSettings:
        return dataclasses.replace(super().new_settings(args), judge=args.judge or "")

    def config_class(self, names: dict[str, Any]) -> type:
        return ACGANConfig

    def parts(self, settings: SupervisedSettings, config: ACGANConfig) -> tuple[ACGAN, ArrayDataset, Any, Any]:
        task = get_task(settings.task)
        test = load_dataset(task.dataset, settings.data_dir, "test", task.label)
        config = dataclasses.replace(config, num_classes=len(test.classes))
        channels, size = test.images.shape[1], test.images.shape[-1]
        learner = ACGAN(config, channels, max(size, GAN_SIDE), pick_device(settings.device), seed=settings.seed)
        train_transform, eval_transform = gan_transforms(task, channels, size)
        return learner, test, train_transform, eval_transform

    def build(self, settings: SupervisedSettings, config: ACGANConfig, run_dir: Path,
              resume: dict[str, Any] | None = None) -> Loop:
        self.refuse_torchrun(settings)
        prepare_process(settings.threads, large_convolutions=True)
        seed_everything(settings.seed)
        device = pick_device(settings.device)
        task = get_task(settings.task)
        train = load_dataset(task.dataset, settings.data_dir, "train", task.label)
        learner, test, train_transform, eval_transform = self.parts(settings, config)
        config = learner.config
        source = ImageBatchSource(train, config.batch_size, settings.seed, train_transform, device)
        judge = make_judge(settings.judge, device, test.images.shape[1]) if settings.judge else None

        def evaluate() -> dict[str, float]:
            grid = save_samples(learner, run_dir / "samples" / f"{learner.updates:08d}.png")
            loop.writer.add_image("samples", np.asarray(Image.open(grid)), learner.updates, dataformats="HWC")
            # the generator's progress (the earlier edition's GIF): every grid so far, the same noise in each
            save_animation(run_dir / PROGRESS_GIF, sorted((run_dir / "samples").glob("*.png")))
            metrics = {"eval/critic_class_accuracy":
                       evaluate_classifier(learner, test, eval_transform, device)["eval/accuracy"]}
            if judge is not None:
                overall, _ = class_conditional_accuracy(learner.generator, judge, config.num_classes, per_class=100,
                                                        noise_dim=config.noise_dim, device=device)
                metrics["eval/class_conditional_accuracy"] = overall
            return metrics

        loop = self.make_loop(learner, source, settings, config, run_dir,
                              self.loop_config(settings, config, source.steps_per_epoch, config.sample_interval),
                              resume, evaluate)
        return loop  # evaluate() reaches the loop's TensorBoard writer through this name

    def rebuild(self, checkpoint: dict[str, Any], device: str = "auto", data_dir: str | None = None,
                **overrides: Any) -> TrainedGAN:
        settings = self.data_dir_of(self.settings_from(checkpoint), data_dir)
        settings.device = device
        learner, test, _, eval_transform = self.parts(settings, self.config_from(checkpoint, settings))
        load_learner(learner, checkpoint)
        return TrainedGAN(learner, settings, test, eval_transform)

    def add_report_flags(self, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("GANs")
        group.add_argument("--data-dir", help="folder of the test set (default: the one the run trained on)")
        group.add_argument("--judge", metavar="RUN_DIR",
                           help="a classifier run whose net scores 100 generated images of each class")
        group.add_argument("--samples", type=Path, metavar="FILE.png",
                           help="write a grid of samples, one column per class (default: RUN_DIR/samples.png)")

    def report(self, checkpoint: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
        run = self.rebuild(checkpoint, args.device, args.data_dir)
        learner, settings = run.learner, run.settings
        metrics = evaluate_classifier(learner, run.test, run.eval_transform, learner.device)
        run_dir = args.path if args.path.is_dir() else args.path.parent
        grid = save_samples(learner, args.samples or run_dir / "samples.png")
        result = {"task": settings.task, "net": settings.net, "steps": checkpoint["loop"]["steps"],
                  "critic_class_accuracy": metrics["eval/accuracy"], "samples": str(grid)}
        if args.judge:
            judge = make_judge(args.judge, learner.device, run.test.images.shape[1])
            overall, per_class = class_conditional_accuracy(learner.generator, judge, learner.config.num_classes,
                                                            noise_dim=learner.config.noise_dim, seed=args.seed,
                                                            device=learner.device)
            result.update(class_conditional_accuracy=overall, per_class=per_class)
        if args.json:
            print(json.dumps(result))
        else:
            print(f"{settings.net} on {settings.task} after {result['steps']} updates: the critic's class head "
                  f"scores {100 * result['critic_class_accuracy']:.2f}% on the test set; samples in {grid}")
            if args.judge:
                print(f"class-conditional accuracy of generated images (judge {args.judge}): "
                      f"{100 * result['class_conditional_accuracy']:.2f}%")
        return result
