"""ACGAN runs (``--task cifar10 --net acgan``) on the shared loop: real images in [-1, 1] from the batch source,
the two-network learner, and an evaluation that writes a sample grid, scores the critic's class head on the test
set and, given a judge (an independently trained classifier run), the class-conditional accuracy of the samples."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlkit.checkpoint import load_checkpoint
from rlkit.config import config_from_dict
from rlkit.data import ArrayDataset, load_dataset
from rlkit.data import transforms as T
from rlkit.errors import UserError
from rlkit.loop import Loop
from rlkit.runtime import pick_device, seed_everything
from rlkit.supervised.gan import ACGAN, ACGANConfig, class_conditional_accuracy, save_samples

GAN_SIDE = 32
"""The generator's output side; smaller images (28x28 digits) are zero-padded to it."""


def gan_transforms(task: Any, channels: int, size: int) -> tuple[T.Compose, T.Compose]:
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
    distribution (digits shifted by the random crop), and a judge that never saw shifts misreads good samples (on
    MNIST, a NumPy CNN without augmentation scores 98% on test digits but 59% on the same digits shifted)."""
    from rlkit.supervised.tasks import job_from_checkpoint

    job, _, _ = job_from_checkpoint(load_checkpoint(run), device=str(device))
    side = job.test.images.shape[-1]
    if job.test.images.shape[1] != channels:
        raise UserError(f"the judge {run} classifies {job.test.images.shape[1]}-channel images, the GAN makes "
                        f"{channels}-channel ones: train a judge on the same task")

    def judge(images: torch.Tensor) -> torch.Tensor:
        top = (images.shape[-1] - side) // 2
        images = images[..., top:top + side, top:top + side]
        pixels = ((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
        return job.learner.log_probs(job.eval_transform(pixels.cpu()).to(device))

    return judge


def build_gan(settings: Any, config: ACGANConfig, test: ArrayDataset, device: torch.device) -> ACGAN:
    channels = test.images.shape[1]
    return ACGAN(config, channels, max(test.images.shape[-1], GAN_SIDE), device, seed=settings.seed)


def make_gan_run(settings: Any, config: ACGANConfig, run_dir: Path, resume: dict[str, Any] | None = None) -> Loop:
    """Assemble the ACGAN job; ``resume`` continues a checkpoint."""
    from rlkit.supervised.tasks import BatchSource, evaluate_classifier, get_task, supervised_loop

    seed_everything(settings.seed)
    device = pick_device(settings.device)
    task = get_task(settings.task)
    train = load_dataset(task.dataset, settings.data_dir, "train", task.label)
    test = load_dataset(task.dataset, settings.data_dir, "test", task.label)
    config = dataclasses.replace(config, num_classes=len(test.classes))
    channels, size = test.images.shape[1], test.images.shape[-1]
    learner = build_gan(settings, config, test, device)
    train_transform, eval_transform = gan_transforms(task, channels, size)
    source = BatchSource(train, config.batch_size, settings.seed, train_transform, device)
    judge = make_judge(settings.judge, device, channels) if settings.judge else None

    def evaluate() -> dict[str, float]:
        grid = save_samples(learner, run_dir / "samples" / f"{learner.updates:08d}.png")
        from PIL import Image

        loop.writer.add_image("samples", np.asarray(Image.open(grid)), learner.updates, dataformats="HWC")
        metrics = evaluate_classifier(learner, test, eval_transform, device)
        metrics = {"eval/critic_class_accuracy": metrics["eval/accuracy"]}
        if judge is not None:
            overall, _ = class_conditional_accuracy(learner.generator, judge, config.num_classes, per_class=100,
                                                    noise_dim=config.noise_dim, device=device)
            metrics["eval/class_conditional_accuracy"] = overall
        return metrics

    loop = supervised_loop(learner, source, settings, config, run_dir, resume, evaluate, config.sample_interval)
    return loop  # evaluate() reaches the loop's TensorBoard writer through this name


def gan_from_checkpoint(checkpoint: dict[str, Any], device: str = "auto", data_dir: str | None = None
                        ) -> tuple[ACGAN, ArrayDataset, Any, Any]:
    """(learner, test set, evaluation transform, settings) of a saved ACGAN run."""
    from rlkit.supervised.tasks import SupervisedSettings, get_task

    settings = SupervisedSettings(**checkpoint["settings"])
    settings.device = device
    if data_dir is not None:
        settings.data_dir = data_dir
    config = config_from_dict(ACGANConfig, checkpoint["config"])
    task = get_task(settings.task)
    test = load_dataset(task.dataset, settings.data_dir, "test", task.label)
    learner = build_gan(settings, config, test, pick_device(device))
    learner.load_state_dict(checkpoint["learner"])
    _, eval_transform = gan_transforms(task, test.images.shape[1], test.images.shape[-1])
    return learner, test, eval_transform, settings
