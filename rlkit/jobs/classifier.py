"""Image classifier runs (``--task cifar10 --net resnet``): data, transforms, learner and loop; the trained
classifier rebuilt from its checkpoint and scored on the test set."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from rlkit.data import ArrayDataset, load_dataset
from rlkit.data import transforms as T
from rlkit.distributed import (SERVER_RANK, init_distributed, init_rpc, is_parameter_server, parameter_server_world,
                               use_local_gpu)
from rlkit.errors import UserError
from rlkit.jobs.base import load_learner, warn_non_finite_weights
from rlkit.jobs.catalog import ImageNet, TaskInfo, get_net, get_task
from rlkit.jobs.supervised import SupervisedJob, SupervisedSettings
from rlkit.loop import Loop
from rlkit.nets.pretrained import freeze, head_name, load_pretrained
from rlkit.parameter_server import ParameterServer, Worker, serve
from rlkit.runtime import pick_device, prepare_process, seed_everything
from rlkit.sources.batches import ImageBatchSource
from rlkit.sources.gradients import GradientSource
from rlkit.supervised.classifier import Classifier, ClassifierConfig, recalibrated_batch_norm, shifted_by_dropout
from rlkit.supervised.numpy_learner import NumpyLearner
from rlkit.supervised.server_learner import ServerLearner
from rlkit.config import whole_number


class RepeatChannels:
    """Gray images for nets that take three channels (ImageNet ResNets)."""

    def __init__(self, channels: int):
        self.channels = channels

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return x if x.shape[1] == self.channels else x.expand(-1, self.channels, -1, -1)


def make_transforms(task: TaskInfo, config: ClassifierConfig, image_shape: tuple[int, ...], net: ImageNet
                    ) -> tuple[T.Compose, T.Compose]:
    """(training, evaluation) pipelines from uint8 (B, C, H, W) to the net's float input."""
    size = image_shape[-1]
    mean, std = T.STATS[task.dataset]
    common: list[Any] = [T.Normalize(mean, std)]
    if net.pad_to and size < net.pad_to:
        common.insert(0, T.Pad(net.pad_to))
    if net.in_channels:
        common.append(RepeatChannels(net.in_channels))
    if config.input_size:
        common.append(T.Resize(config.input_size))
    augment: list[Any] = []
    if config.augment and config.augmentation == "resized-crop-jitter":
        # the course's template: RandomResizedCrop(scale=(0.7, 1.0), ratio=(1, 1)) and ColorJitter of 0.1
        augment += [T.RandomResizedCrop(size, (0.7, 1.0), (1.0, 1.0)), T.ColorJitter(0.1, 0.1, 0.1, 0.1)]
        if task.flip:
            augment.append(T.RandomHorizontalFlip())
    elif config.augment:
        augment.append(T.RandomCrop(size, config.crop_padding))
        if task.flip:
            augment.append(T.RandomHorizontalFlip())
    return T.Compose([T.to_float, *augment, *common]), T.Compose([T.to_float, *common])


def build_learner(net_name: str, config: ClassifierConfig, image_shape: tuple[int, ...], num_classes: int,
                  steps_per_epoch: int, device: torch.device) -> Classifier | NumpyLearner:
    """The learner for ``net_name``: pretrained weights loaded and layers frozen as ``config`` says."""
    net = get_net(net_name)
    channels, size = image_shape[0], image_shape[-1]
    if net.numpy:
        if config.pretrained or config.freeze_except or config.optimizer != "sgd" or config.input_size:
            raise UserError(f"{net_name} trains with plain SGD from scratch: drop --pretrained, --freeze-except, "
                            "--input-size and --optimizer, or pick a torch net (cnn, resnet)")
        if config.compile:
            raise UserError(f"{net_name} is a NumPy net, which torch.compile cannot compile: drop --compile")
        return NumpyLearner(net.build(config, channels, size, num_classes), config, steps_per_epoch)
    size = config.input_size or max(size, net.pad_to)
    model = net.build(config, net.in_channels or channels, size, num_classes)
    if config.pretrained:
        load_pretrained(model, config.pretrained, skip=(head_name(model) + ".",))
    if config.freeze_except:
        freeze(model, config.freeze_except)
    return Classifier(model.to(device), config, steps_per_epoch, device)


def recalibrates(learner: Any, config: ClassifierConfig) -> bool:
    """Whether evaluation re-estimates batch norm's statistics (a torch net with dropout before batch norm)."""
    return not isinstance(learner, NumpyLearner) and config.bn_recalibration > 0 and bool(
        shifted_by_dropout(learner.model))


def calibration_batches(train: ArrayDataset, learner: Any, config: ClassifierConfig) -> list[torch.Tensor] | None:
    """The training images (uint8 batches of ``config.batch_size``) through which evaluation re-estimates batch
    norm's statistics (``--bn-recalibration``), the same every time: a fixed draw, so evaluate.py gives the number
    training logged. None where there is nothing to re-estimate (no dropout, no batch norm, or 0 batches)."""
    if not recalibrates(learner, config):
        return None
    count = min(len(train.labels), config.bn_recalibration * config.batch_size)
    chosen = torch.from_numpy(train.images[np.sort(np.random.default_rng(0).permutation(len(train.labels))[:count])])
    return list(chosen.split(config.batch_size))


def test_mode_statistics(learner: Any, calibration: list[torch.Tensor] | None, transform: Callable[..., torch.Tensor],
                         device: torch.device, mc_samples: int) -> contextlib.AbstractContextManager:
    """Batch norm's statistics re-estimated on ``calibration`` for an evaluation by the scaling rule; Monte Carlo
    dropout keeps training's, which were estimated with dropout on as it evaluates."""
    if calibration is None or mc_samples > 0:
        return contextlib.nullcontext()
    return recalibrated_batch_norm(learner.model, (transform(batch.to(device)) for batch in calibration))


@torch.no_grad()
def evaluate_classifier(learner: Any, data: ArrayDataset, transform: Callable[..., torch.Tensor],
                        device: torch.device, batch_size: int = 500, mc_samples: int = 0, seed: int = 0,
                        calibration: list[torch.Tensor] | None = None) -> dict[str, float]:
    """Accuracy (top-1, top-5) and mean negative log-likelihood of ``learner.log_probs`` on ``data``.

    ``mc_samples`` > 0 averages that many dropout masks per image (Monte Carlo dropout), drawn from ``seed``; else
    batch norm's statistics are first re-estimated on ``calibration`` (:func:`calibration_batches`).
    """
    correct1 = correct5 = nll = 0.0
    images, labels = torch.from_numpy(data.images), torch.from_numpy(data.labels.astype(np.int64))
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), \
            test_mode_statistics(learner, calibration, transform, device, mc_samples):
        torch.manual_seed(seed)
        for start in range(0, len(labels), batch_size):
            x = transform(images[start:start + batch_size].to(device))
            y = labels[start:start + batch_size].to(device)
            log_probs = learner.log_probs(x, mc_samples)
            nll += F.nll_loss(log_probs, y, reduction="sum").item()
            top = log_probs.topk(min(5, log_probs.shape[1]), dim=1).indices
            correct1 += (top[:, 0] == y).sum().item()
            correct5 += (top == y[:, None]).any(1).sum().item()
    n = len(labels)
    return {"eval/accuracy": correct1 / n, "eval/top5_accuracy": correct5 / n, "eval/nll": nll / n}


@torch.no_grad()
def class_probabilities(learner: Any, data: ArrayDataset, transform: Callable[..., torch.Tensor],
                        device: torch.device, batch_size: int = 500, mc_samples: int = 0, seed: int = 0,
                        calibration: list[torch.Tensor] | None = None) -> np.ndarray:
    """``learner``'s class probabilities ``(N, K)`` on every image of ``data`` (float64), as
    :func:`evaluate_classifier` computes them."""
    images = torch.from_numpy(data.images)
    parts = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), \
            test_mode_statistics(learner, calibration, transform, device, mc_samples):
        torch.manual_seed(seed)
        for start in range(0, len(images), batch_size):
            parts.append(learner.log_probs(transform(images[start:start + batch_size].to(device)), mc_samples)
                         .double().exp().cpu())
    return torch.cat(parts).numpy()


def probability_scores(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Top-1 and top-5 accuracy and mean negative log-likelihood of class probabilities ``(N, K)``."""
    labels = labels.astype(np.int64)
    top = np.argsort(-probs, axis=1, kind="stable")[:, :min(5, probs.shape[1])]
    likelihood = probs[np.arange(len(labels)), labels]
    return {"accuracy": float((top[:, 0] == labels).mean()), "top5_accuracy": float((top == labels[:, None]).any(1)
                                                                                     .mean()),
            "nll": float(-np.log(np.maximum(likelihood, 1e-300)).mean())}


@dataclass
class TrainedClassifier:
    """A classifier rebuilt from its checkpoint, with what scoring it needs."""

    learner: Classifier | NumpyLearner
    settings: SupervisedSettings
    config: ClassifierConfig
    test: ArrayDataset
    eval_transform: Any
    device: torch.device
    calibration: list[torch.Tensor] | None = None
    """Training batches for batch norm's test-mode statistics (:func:`calibration_batches`)."""


def has_dropout(learner: Any) -> bool:
    if isinstance(learner, NumpyLearner):  # the NumPy nets have no dropout
        return False
    return any(isinstance(m, torch.nn.modules.dropout._DropoutNd) for m in learner.model.modules())


class ClassifierJob(SupervisedJob):
    kind = "classifier"
    best_metric = "eval/accuracy"

    def config_class(self, names: dict[str, Any]) -> type:
        return ClassifierConfig

    def parts(self, settings: SupervisedSettings, config: ClassifierConfig, steps_per_epoch: int
               ) -> tuple[Classifier | NumpyLearner, ArrayDataset, Any, Any]:
        task, net = get_task(settings.task), get_net(settings.net)
        test = load_dataset(task.dataset, settings.data_dir, "test", task.label)
        image_shape = tuple(test.images.shape[1:])
        learner = build_learner(settings.net, config, image_shape, len(test.classes), steps_per_epoch,
                                pick_device(settings.device))
        train_transform, eval_transform = make_transforms(task, config, image_shape, net)
        return learner, test, train_transform, eval_transform

    def build(self, settings: SupervisedSettings, config: ClassifierConfig, run_dir: Path,
              resume: dict[str, Any] | None = None) -> Loop | Worker:
        prepare_process(settings.threads, large_convolutions=not get_net(settings.net).numpy)
        seed_everything(settings.seed)  # the same initial weights on every process (DDP also broadcasts them)
        device = pick_device(settings.device)
        net = get_net(settings.net)
        if is_parameter_server(settings.distributed):
            return self.build_parameter_server(settings, config, run_dir, resume)
        rank, world_size = init_distributed(device, settings.allreduce)
        if world_size > 1 and net.numpy:
            raise UserError(f"{settings.net} is a NumPy net and cannot train under torchrun: run it as one process")
        task = get_task(settings.task)
        train = load_dataset(task.dataset, settings.data_dir, "train", task.label)
        learner, test, train_transform, eval_transform = self.parts(settings, config,
                                                                     len(train.labels) // config.batch_size)
        source = ImageBatchSource(train, config.batch_size, settings.seed, train_transform, device, as_numpy=net.numpy,
                             rank=rank, world_size=world_size)
        learner.steps_per_epoch = source.steps_per_epoch  # each process sees 1/world of every epoch
        if world_size > 1:
            torch.manual_seed(settings.seed + 1_000 * rank)  # weights are built: now each process its own dropout
        calibration = calibration_batches(train, learner, config)
        return self.make_loop(learner, source, settings, config, run_dir,
                              self.loop_config(settings, config, source.steps_per_epoch), resume,
                              lambda: evaluate_classifier(learner, test, eval_transform, device,
                                                          calibration=calibration))

    def build_parameter_server(self, settings: SupervisedSettings, config: ClassifierConfig, run_dir: Path,
                               resume: dict[str, Any] | None) -> Loop | Worker:
        """``--distributed ps-sync|ps-async``: on rank 0 the loop of the server (its source the workers' pushes,
        its learner the classifier they update), on ranks 1..N a :class:`Worker` over its shard of the data."""
        rank, world_size = parameter_server_world(settings.distributed)  # before any data is read
        workers = world_size - 1
        if get_net(settings.net).numpy:
            raise UserError(f"{settings.net} is a NumPy net and cannot train under a parameter server: pick a torch "
                            "net (cnn, resnet) or run it as one process")
        if config.optimizer in ("lbfgs", "hessian-free"):
            raise UserError(f"--optimizer {config.optimizer} evaluates the loss several times per step, which a "
                            "parameter server's pushed gradients cannot: pick adam, rmsprop or sgd, or --distributed ddp")
        device = pick_device(settings.device)
        use_local_gpu(device)
        task = get_task(settings.task)
        train = load_dataset(task.dataset, settings.data_dir, "train", task.label)
        # Worker w takes share w - 1 of every epoch, batch k of it at its k-th gradient (as DDP's rank w - 1).
        shard_steps = len(train.labels) // workers // config.batch_size
        if shard_steps < 1:
            raise UserError(f"the training set has {len(train.labels)} images, fewer than one batch of "
                            f"{config.batch_size} per worker: lower --batch-size")
        synchronous = settings.distributed == "ps-sync"
        steps_per_epoch = shard_steps if synchronous else shard_steps * workers  # async: a step is one gradient
        classifier, test, train_transform, eval_transform = self.parts(settings, config, steps_per_epoch)
        if rank != SERVER_RANK:
            shard = ImageBatchSource(train, config.batch_size, settings.seed, train_transform, device,
                                     rank=rank - 1, world_size=workers)
            init_rpc(settings.distributed)
            return Worker(rank, classifier, shard, settings.seed)
        server = ParameterServer(workers, synchronous)
        learner = ServerLearner(classifier, server)
        source = GradientSource(server)
        calibration = calibration_batches(train, classifier, config)
        loop = self.make_loop(learner, source, settings, config, run_dir,
                              self.loop_config(settings, config, steps_per_epoch), resume,
                              lambda: evaluate_classifier(classifier, test, eval_transform, device,
                                                          calibration=calibration))
        server.total = loop.config.total_steps
        serve(server)
        init_rpc(settings.distributed)  # the workers' first pulls can come as soon as everyone has joined
        server.watch()
        return loop

    def rebuild(self, checkpoint: dict[str, Any], device: str = "auto", data_dir: str | None = None,
                **overrides: Any) -> TrainedClassifier:
        settings = self.data_dir_of(self.settings_from(checkpoint), data_dir)
        settings.device = device
        config = self.config_from(checkpoint, settings)
        # The trained weights replace any pretrained file, which need not exist where the run is evaluated.
        learner, test, _, eval_transform = self.parts(settings, dataclasses.replace(config, pretrained=""), 1)
        load_learner(learner, checkpoint)
        calibration = None
        if recalibrates(learner, config):  # only then is the training set read
            task = get_task(settings.task)
            calibration = calibration_batches(load_dataset(task.dataset, settings.data_dir, "train", task.label),
                                              learner, config)
        return TrainedClassifier(learner, settings, config, test, eval_transform, pick_device(device), calibration)

    def add_report_flags(self, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("classifiers")
        group.add_argument("--data-dir", help="folder of the test set (default: the one the run trained on)")
        group.add_argument("--mc-samples", type=whole_number, default=0,
                           help="Monte Carlo dropout: average this many dropout masks per image (default: 0, the "
                                "scaling rule: dropout off)")

    def ensemble_report(self, checkpoints: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
        """``evaluate.py RUN1 RUN2 ... --ensemble``: the members' class probabilities on the test set averaged
        (an ensemble of equal weights), with each member's scores and the ensemble's."""
        runs = [self.rebuild(checkpoint, args.device, args.data_dir) for checkpoint in checkpoints]
        first = runs[0]
        for path, run in zip(args.paths[1:], runs[1:]):
            if run.settings.task != first.settings.task or run.test.classes != first.test.classes:
                raise UserError(f"--ensemble averages runs of one task: {path} is a {run.settings.task} run with "
                                f"{len(run.test.classes)} classes, {args.paths[0]} a {first.settings.task} run with "
                                f"{len(first.test.classes)}")
            if not np.array_equal(run.test.labels, first.test.labels):
                raise UserError(f"{path} was tested on other images than {args.paths[0]}: pass the same --data-dir "
                                "for every run")
        labels = first.test.labels
        probs = [class_probabilities(run.learner, run.test, run.eval_transform, run.device,
                                     mc_samples=args.mc_samples, seed=args.seed, calibration=run.calibration)
                 for run in runs]
        members = [{"run": str(path), "net": run.settings.net, **probability_scores(p, labels)}
                   for path, run, p in zip(args.paths, runs, probs)]
        ensemble = probability_scores(np.mean(probs, axis=0), labels)
        result = {"task": first.settings.task, "images": len(labels), "members": members, "ensemble": ensemble}
        if args.json:
            print(json.dumps(result))
        else:
            for member in members:
                print(f"{member['run']} ({member['net']}): accuracy {100 * member['accuracy']:.2f}%, top-5 "
                      f"{100 * member['top5_accuracy']:.2f}%, nll {member['nll']:.4f}")
            print(f"ensemble of {len(runs)} (mean probability): accuracy {100 * ensemble['accuracy']:.2f}%, top-5 "
                  f"{100 * ensemble['top5_accuracy']:.2f}%, nll {ensemble['nll']:.4f} over {len(labels)} images")
        return result

    def report(self, checkpoint: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
        if args.mc_samples < 0:
            raise UserError(f"--mc-samples must be 0 or more, got {args.mc_samples}")
        run = self.rebuild(checkpoint, args.device, args.data_dir)
        warn_non_finite_weights(checkpoint)
        if args.mc_samples and not has_dropout(run.learner):
            raise UserError(f"--mc-samples needs a net with dropout; {run.settings.net} has none: drop --mc-samples")
        metrics = evaluate_classifier(run.learner, run.test, run.eval_transform, run.device,
                                      mc_samples=args.mc_samples, seed=args.seed, calibration=run.calibration)
        result = {"task": run.settings.task, "net": run.settings.net, "steps": checkpoint["loop"]["steps"],
                  "images": len(run.test.labels), "mc_samples": args.mc_samples,
                  **{key.removeprefix("eval/"): value for key, value in metrics.items()}}
        if args.json:
            print(json.dumps(result))
        else:
            how = f"Monte Carlo dropout, {args.mc_samples} samples" if args.mc_samples else "dropout scaling rule"
            print(f"{run.settings.net} on {run.settings.task} after {result['steps']} updates ({how}): test accuracy "
                  f"{100 * result['accuracy']:.2f}%, top-5 {100 * result['top5_accuracy']:.2f}% "
                  f"over {result['images']} images")
        return result
