"""Supervised jobs: ``--task`` names a data set, ``--net`` a network; this module builds the learner, the batch
source and the shared loop for them, and rebuilds a trained classifier from its checkpoint."""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlkit.config import config_from_dict, config_to_dict
from rlkit.data import ArrayDataset, load_dataset
from rlkit.data import transforms as T
from rlkit.distributed import init_distributed, is_main, launched_by_torchrun
from rlkit.errors import UserError
from rlkit.loop import Loop, LoopConfig
from rlkit.runtime import pick_device, seed_everything
from rlkit.supervised.classifier import Classifier, ClassifierConfig, learning_rate_at
from rlkit.supervised.sampling import ShuffledBatches


# ---------------------------------------------------------------------------------------------------- tasks and nets
@dataclass(frozen=True)
class TaskInfo:
    """A classification task: which data set, which labels, and which augmentations keep a label true."""

    dataset: str
    label: str = "fine"
    flip: bool = True
    """Horizontal flips keep the class (not for digits)."""
    video: bool = False
    """Videos, for the video nets (:mod:`rlkit.supervised.video_task`)."""


TASKS: dict[str, TaskInfo] = {
    "mnist": TaskInfo("mnist", flip=False),
    "fashion-mnist": TaskInfo("fashion-mnist"),
    "cifar10": TaskInfo("cifar10"),
    "cifar100": TaskInfo("cifar100"),
    "cifar100-coarse": TaskInfo("cifar100", label="coarse"),
    "ucf101": TaskInfo("ucf101", video=True),
}


@dataclass(frozen=True)
class NetSpec:
    """How ``--net NAME`` is built and which recipe it trains with by default."""

    build: Callable[[ClassifierConfig, int, int, int], Any] | None
    """(config, in_channels, image_size, num_classes) -> torch module or NumPy model."""
    preset: dict[str, Any]
    """ClassifierConfig fields that differ from the class defaults for this net."""
    help: str
    numpy: bool = False
    imagenet: bool = False
    """Takes 3-channel images (gray ones are repeated) and ImageNet weight files."""
    pad_to: int = 0
    """Zero-pad smaller images to this side (the GAN nets need 32x32: 28x28 digits are padded)."""
    gan: bool = False
    """Trains a generator and a critic (:mod:`rlkit.supervised.gan_task`), not a classifier."""
    video: bool = False
    """Classifies videos (:mod:`rlkit.supervised.video_task`, which builds it) with a VideoConfig."""


def _numpy_mlp(config: ClassifierConfig, channels: int, size: int, classes: int) -> Any:
    from rlkit.supervised import numpy_nn

    return numpy_nn.mlp(channels * size * size, config.hidden, classes)


def _numpy_cnn(config: ClassifierConfig, channels: int, size: int, classes: int) -> Any:
    from rlkit.supervised import numpy_nn

    return numpy_nn.cnn(channels, size, config.conv_channels, config.kernel_size, classes)


def _deep_cnn(config: ClassifierConfig, channels: int, size: int, classes: int) -> nn.Module:
    from rlkit.nets.cnn import DEFAULT_CHANNELS, DeepCNN

    widths = tuple(max(1, round(c * config.width)) for c in DEFAULT_CHANNELS)
    return DeepCNN(num_classes=classes, in_channels=channels, image_size=size, channels=widths, dropout=config.dropout)


def _cifar_resnet(config: ClassifierConfig, channels: int, size: int, classes: int) -> nn.Module:
    from rlkit.nets.resnet import CifarResNet

    return CifarResNet(num_classes=classes, in_channels=channels, dropout=config.dropout, width=config.width)


def _discriminator(config: ClassifierConfig, channels: int, size: int, classes: int) -> nn.Module:
    from rlkit.nets.gan import Discriminator, DiscriminatorAsClassifier

    return DiscriminatorAsClassifier(Discriminator(classes, channels, size, width=max(1, round(196 * config.width))))


def _imagenet_resnet(name: str) -> Callable[..., nn.Module]:
    def build(config: ClassifierConfig, channels: int, size: int, classes: int) -> nn.Module:
        from rlkit.nets import resnet

        return getattr(resnet, name)(num_classes=classes, in_channels=channels)

    return build


_NUMPY_RECIPE = {"optimizer": "sgd", "momentum": 0.0, "schedule": "step", "step_epochs": 5, "gamma": 0.1,
                 "augment": False}
NETS: dict[str, NetSpec] = {
    "numpy-mlp": NetSpec(_numpy_mlp, {**_NUMPY_RECIPE, "epochs": 10, "batch_size": 32, "learning_rate": 0.1},
                         "one hidden ReLU layer in NumPy (assignment 1)", numpy=True),
    "numpy-cnn": NetSpec(_numpy_cnn, {**_NUMPY_RECIPE, "epochs": 6, "batch_size": 32, "learning_rate": 0.05},
                         "one convolution with several channels in NumPy (assignment 2)", numpy=True),
    "cnn": NetSpec(_deep_cnn, {"epochs": 30, "dropout": 0.25}, "8 conv + 3 FC layers with batch norm and dropout "
                   "(assignment 3)"),
    "resnet": NetSpec(_cifar_resnet, {"epochs": 30}, "the assignment-4 ResNet for 32x32 images"),
    "discriminator": NetSpec(_discriminator, {"epochs": 100, "learning_rate": 1e-4, "schedule": "step",
                                              "step_epochs": 50, "dropout": 0.0},
                             "the assignment-5 GAN critic (8 convs of 196, LayerNorm) trained as a classifier",
                             pad_to=32),
    "acgan": NetSpec(None, {}, "ACGAN with WGAN gradient penalty (assignment 5b): a generator and a critic with a "
                     "class head; flags from its own config", pad_to=32, gan=True),
    "resnet18": NetSpec(_imagenet_resnet("resnet18"), {"epochs": 5, "learning_rate": 1e-4, "input_size": 224},
                        "ImageNet ResNet-18 (torchvision keys; --pretrained FILE to fine-tune)", imagenet=True),
    "resnet50": NetSpec(_imagenet_resnet("resnet50"), {"epochs": 5, "learning_rate": 1e-4, "input_size": 224},
                        "ImageNet ResNet-50 (torchvision keys; --pretrained FILE to fine-tune)", imagenet=True),
    "frame-resnet50": NetSpec(None, {"epochs": 10, "batch_size": 32, "learning_rate": 1e-4, "input_size": 224},
                              "UCF-101 from single frames (assignment 6a): ImageNet ResNet-50 with a new head "
                              "(--pretrained FILE); a video sums its frames' log-probabilities", video=True),
    "frame-resnet18": NetSpec(None, {"epochs": 10, "batch_size": 32, "learning_rate": 1e-4, "input_size": 224},
                              "frame-resnet50 with a ResNet-18, cheaper", video=True),
    "r3d18": NetSpec(None, {"epochs": 10, "batch_size": 16, "learning_rate": 1e-4, "input_size": 112},
                     "UCF-101 from 16-frame clips (assignment 6b): R3D-18 (--pretrained Kinetics-400 file, "
                     "torchvision keys); a video sums its clips' log-probabilities", video=True),
    "cnn-lstm": NetSpec(None, {"epochs": 20, "batch_size": 16, "input_size": 112},
                        "UCF-101 from clips: the course's ResNet per frame and an LSTM over the frames", video=True),
}


def _lookup(table: dict[str, Any], name: str, what: str) -> Any:
    if name not in table:
        close = difflib.get_close_matches(name, table, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UserError(f"unknown {what} {name!r}{hint}: use one of {', '.join(table)}")
    return table[name]


def get_task(name: str) -> TaskInfo:
    return _lookup(TASKS, name, "--task")


def get_net(name: str) -> NetSpec:
    return _lookup(NETS, name, "--net")


def config_class(net: str) -> type:
    """The config dataclass of ``net``: :class:`ClassifierConfig`, or the GAN's or video nets' own."""
    if get_net(net).video:
        from rlkit.supervised.video_task import VideoConfig

        return VideoConfig
    if get_net(net).gan:
        from rlkit.supervised.gan import ACGANConfig

        return ACGANConfig
    return ClassifierConfig


def preset(net: str) -> Any:
    """The default recipe of ``net``."""
    return config_class(net)(**get_net(net).preset)


# ---------------------------------------------------------------------------------------------------- data
class BatchSource(ShuffledBatches):
    """Shuffled mini-batches of an in-memory data set for the loop (order and seeds: :class:`ShuffledBatches`)."""

    def __init__(self, data: ArrayDataset, batch_size: int, seed: int, transform: Callable[..., torch.Tensor],
                 device: torch.device, as_numpy: bool = False, rank: int = 0, world_size: int = 1):
        super().__init__(len(data.labels), batch_size, seed, rank, world_size, "images")
        self.images = torch.from_numpy(np.ascontiguousarray(data.images))
        self.labels = torch.from_numpy(data.labels.astype(np.int64))
        self.transform, self.device, self.as_numpy = transform, device, as_numpy

    def next(self) -> tuple[Any, Any]:
        rows, generator = self.next_rows()
        rows = torch.from_numpy(rows)
        images = self.transform(self.images[rows].to(self.device), generator=generator)
        labels = self.labels[rows].to(self.device)
        if self.as_numpy:
            return images.cpu().numpy(), labels.cpu().numpy()
        return images, labels


class RepeatChannels:
    """Gray images for nets that take three channels (ImageNet ResNets)."""

    def __init__(self, channels: int):
        self.channels = channels

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return x if x.shape[1] == self.channels else x.expand(-1, self.channels, -1, -1)


def make_transforms(task: TaskInfo, config: ClassifierConfig, image_shape: tuple[int, ...], net: NetSpec
                    ) -> tuple[T.Compose, T.Compose]:
    """(training, evaluation) pipelines from uint8 (B, C, H, W) to the net's float input."""
    size = image_shape[-1]
    mean, std = T.STATS[task.dataset]
    common: list[Any] = [T.Normalize(mean, std)]
    if net.pad_to and size < net.pad_to:
        common.insert(0, T.Pad(net.pad_to))
    if net.imagenet:
        common.append(RepeatChannels(3))
    if config.input_size:
        common.append(T.Resize(config.input_size))
    augment: list[Any] = []
    if config.augment:
        augment.append(T.RandomCrop(size, config.crop_padding))
        if task.flip:
            augment.append(T.RandomHorizontalFlip())
    return T.Compose([T.to_float, *augment, *common]), T.Compose([T.to_float, *common])


# ---------------------------------------------------------------------------------------------------- learners
class NumpyLearner:
    """Adapts a :class:`rlkit.supervised.numpy_nn.NumpyClassifier` to the loop: the learning-rate schedule, and
    checkpoints as tensors (readable with ``weights_only=True``)."""

    def __init__(self, model: Any, config: ClassifierConfig, steps_per_epoch: int):
        from rlkit.supervised.numpy_nn import NumpyClassifier

        self.config, self.steps_per_epoch = config, steps_per_epoch
        self.classifier = NumpyClassifier(model, config.learning_rate, config.momentum, config.weight_decay)
        self.updates = 0

    def update(self, batch: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
        self.classifier.set_lr(learning_rate_at(self.config, self.updates / self.steps_per_epoch))
        self.updates += 1
        return self.classifier.update(batch)

    def log_probs(self, images: torch.Tensor, mc_samples: int = 0) -> torch.Tensor:
        logits = torch.from_numpy(np.asarray(self.classifier.logits(images.cpu().numpy()), dtype=np.float32))
        return F.log_softmax(logits, dim=1)

    def state_dict(self) -> dict[str, Any]:
        return {"classifier": _to_tensors(self.classifier.state_dict()), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.classifier.load_state_dict(_to_numpy(state["classifier"]))
        self.updates = state["updates"]


def _to_tensors(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _to_tensors(v) for k, v in tree.items()}
    return torch.from_numpy(np.array(tree)) if isinstance(tree, np.ndarray) else tree


def _to_numpy(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _to_numpy(v) for k, v in tree.items()}
    return tree.numpy() if isinstance(tree, torch.Tensor) else tree


def build_learner(net_name: str, config: ClassifierConfig, image_shape: tuple[int, ...], num_classes: int,
                  steps_per_epoch: int, device: torch.device) -> Classifier | NumpyLearner:
    """The learner for ``net_name``: pretrained weights loaded and layers frozen as ``config`` says."""
    net = get_net(net_name)
    channels, size = image_shape[0], image_shape[-1]
    if net.numpy:
        if config.pretrained or config.freeze_except or config.optimizer != "sgd" or config.input_size:
            raise UserError(f"{net_name} trains with plain SGD from scratch: drop --pretrained, --freeze-except, "
                            "--input-size and --optimizer, or pick a torch net (cnn, resnet)")
        return NumpyLearner(net.build(config, channels, size, num_classes), config, steps_per_epoch)
    from rlkit.nets.pretrained import freeze, load_pretrained

    size = config.input_size or max(size, net.pad_to)
    model = net.build(config, 3 if net.imagenet else channels, size, num_classes)
    if config.pretrained:
        load_pretrained(model, config.pretrained, skip=("fc.",))
    if config.freeze_except:
        freeze(model, config.freeze_except)
    return Classifier(model.to(device), config, steps_per_epoch, device)


# ---------------------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate_classifier(learner: Classifier | NumpyLearner, data: ArrayDataset, transform: Callable[..., torch.Tensor],
                        device: torch.device, batch_size: int = 500, mc_samples: int = 0, seed: int = 0
                        ) -> dict[str, float]:
    """Accuracy (top-1, top-5) and mean negative log-likelihood on ``data``.

    ``mc_samples`` > 0 averages that many dropout masks per image (Monte Carlo dropout), drawn from ``seed``.
    """
    correct1 = correct5 = nll = 0.0
    images, labels = torch.from_numpy(data.images), torch.from_numpy(data.labels.astype(np.int64))
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
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


# ---------------------------------------------------------------------------------------------------- runs
@dataclass
class SupervisedSettings:
    """What a supervised run needs beyond the classifier's config."""

    task: str
    net: str
    data_dir: str
    seed: int = 1
    device: str = "auto"
    max_steps: int = 0
    """Stop after this many updates (0: train all epochs)."""
    eval_interval: int = 0
    """Updates between test evaluations (0: once per epoch)."""
    checkpoint_interval: int = 0
    """Updates between checkpoints (0: once per epoch)."""
    progress: bool = True
    judge: str = ""
    """GAN runs: a classifier run whose net scores the generated samples of each class at every evaluation."""


def default_data_dir(task: str) -> str:
    return str(Path("data") / get_task(task).dataset)


@dataclass
class SupervisedJob:
    """Everything a supervised run is made of, for the loop and for evaluation."""

    learner: Classifier | NumpyLearner
    train_transform: Any
    eval_transform: Any
    test: ArrayDataset
    steps_per_epoch: int
    device: torch.device


def build_job(settings: SupervisedSettings, config: ClassifierConfig, train: ArrayDataset | None = None
              ) -> SupervisedJob:
    """Load the test set (and size the schedule from ``train`` if given) and build the learner."""
    task, net = get_task(settings.task), get_net(settings.net)
    test = load_dataset(task.dataset, settings.data_dir, "test", task.label)
    image_shape = tuple(test.images.shape[1:])
    steps_per_epoch = len(train.labels) // config.batch_size if train is not None else 1
    device = pick_device(settings.device)
    learner = build_learner(settings.net, config, image_shape, len(test.classes), steps_per_epoch, device)
    train_transform, eval_transform = make_transforms(task, config, image_shape, net)
    return SupervisedJob(learner, train_transform, eval_transform, test, steps_per_epoch, device)


def make_supervised_run(settings: SupervisedSettings, config: ClassifierConfig, run_dir: Path,
                        resume: dict[str, Any] | None = None) -> Loop:
    """Assemble data, learner, source and loop; ``resume`` continues a checkpoint."""
    spec = get_net(settings.net)
    if (spec.gan or spec.video) and launched_by_torchrun():
        raise UserError(f"{settings.net} runs in one process for now (GAN and video jobs are not data-parallel yet): "
                        "start it without torchrun")
    if get_task(settings.task).video or get_net(settings.net).video:
        from rlkit.supervised.video_task import make_video_run

        return make_video_run(settings, config, run_dir, resume)
    if get_net(settings.net).gan:
        from rlkit.supervised.gan_task import make_gan_run

        return make_gan_run(settings, config, run_dir, resume)
    seed_everything(settings.seed)  # the same initial weights on every process (DDP also broadcasts them)
    rank, world_size = init_distributed(pick_device(settings.device))
    if world_size > 1 and get_net(settings.net).numpy:
        raise UserError(f"{settings.net} is a NumPy net and cannot train under torchrun: run it as one process")
    task = get_task(settings.task)
    train = load_dataset(task.dataset, settings.data_dir, "train", task.label)
    job = build_job(settings, config, train)
    source = BatchSource(train, config.batch_size, settings.seed, job.train_transform, job.device,
                         as_numpy=get_net(settings.net).numpy, rank=rank, world_size=world_size)
    job.learner.steps_per_epoch = source.steps_per_epoch  # each process sees 1/world of every epoch
    if world_size > 1:
        torch.manual_seed(settings.seed + 1_000 * rank)  # weights are built: now each process its own dropout masks
    return supervised_loop(job.learner, source, settings, config, run_dir, resume,
                           lambda: evaluate_classifier(job.learner, job.test, job.eval_transform, job.device))


def supervised_loop(learner: Any, source: BatchSource, settings: SupervisedSettings, config: Any, run_dir: Path,
                    resume: dict[str, Any] | None, evaluate: Callable[[], dict[str, float]],
                    eval_interval: int = 0) -> Loop:
    """The shared loop for a supervised learner: ``config.epochs`` passes (or ``settings.max_steps``), evaluation
    and checkpoints once per epoch unless the settings say otherwise; ``resume`` continues a checkpoint."""
    per_epoch = source.steps_per_epoch
    total = config.epochs * per_epoch
    if settings.max_steps:
        total = min(total, settings.max_steps)
    header = {"kind": "supervised", "task": settings.task, "net": settings.net, "config": config_to_dict(config),
              "settings": dict(vars(settings))}
    loop = Loop(
        learner, source,
        LoopConfig(total, settings.eval_interval or eval_interval or per_epoch,
                   settings.checkpoint_interval or per_epoch, log_interval=max(1, min(100, per_epoch // 4)),
                   progress=settings.progress),
        run_dir, header, evaluate=evaluate,
    )
    if resume is not None:
        loop.restore(resume)
    if is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(header, indent=2) + "\n")
    return loop


def job_from_checkpoint(checkpoint: dict[str, Any], device: str = "auto", data_dir: str | None = None
                        ) -> tuple[SupervisedJob, SupervisedSettings, ClassifierConfig]:
    """Rebuild a trained classifier, its test set and transforms from a checkpoint dict."""
    if checkpoint.get("kind") != "supervised":
        raise UserError(f"this checkpoint holds a {checkpoint.get('kind')!r} run, not a supervised one")
    settings = SupervisedSettings(**checkpoint["settings"])
    settings.device = device
    if data_dir is not None:
        settings.data_dir = data_dir
    if get_net(settings.net).gan:
        raise UserError(f"this checkpoint holds a GAN ({settings.net}), not a classifier")
    if get_net(settings.net).video:
        raise UserError(f"this checkpoint holds a video classifier ({settings.net}), not an image one")
    config = config_from_dict(ClassifierConfig, checkpoint["config"])
    # The trained weights replace any pretrained file, which need not exist where the run is evaluated.
    job = build_job(settings, dataclasses.replace(config, pretrained=""))
    job.learner.load_state_dict(checkpoint["learner"])
    return job, settings, config
