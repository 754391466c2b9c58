"""The ``--task`` and ``--net`` names: one row per data set and per network. A new net is one row here (with a
builder from :mod:`rlkit.nets`); its job (classifier, gan, video) says how it is trained."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import nn

from rlkit.data.features import read_feature_meta
from rlkit.data.transforms import FLOW_STATS, KINETICS_STATS, STATS
from rlkit.errors import UserError, close_names
from rlkit.nets import densenet as densenets
from rlkit.nets import recurrent
from rlkit.nets import resnet as resnets
from rlkit.nets import video as video_nets
from rlkit.nets.cnn import DEFAULT_CHANNELS, DeepCNN
from rlkit.nets.gan import Discriminator, DiscriminatorAsClassifier
from rlkit.supervised import numpy_nn
from rlkit.supervised.classifier import ClassifierConfig


# ---------------------------------------------------------------------------------------------------- tasks
@dataclass(frozen=True)
class TaskInfo:
    """A classification task: which data set, which labels, and which augmentations keep a label true."""

    dataset: str
    label: str = "fine"
    flip: bool = True
    """Horizontal flips keep the class (not for digits)."""
    videos: bool = False
    """Its samples are videos (for the video nets)."""


TASKS: dict[str, TaskInfo] = {
    "mnist": TaskInfo("mnist", flip=False),
    "fashion-mnist": TaskInfo("fashion-mnist"),
    "cifar10": TaskInfo("cifar10"),
    "cifar100": TaskInfo("cifar100"),
    "cifar100-coarse": TaskInfo("cifar100", label="coarse"),
    "ucf101": TaskInfo("ucf101", videos=True),
}


# ---------------------------------------------------------------------------------------------------- nets
@dataclass(frozen=True)
class ImageNet:
    """An image classifier: ``--task`` one of the image data sets."""

    job: ClassVar[str] = "classifier"
    build: Callable[[ClassifierConfig, int, int, int], Any]
    """(config, in_channels, image_size, num_classes) -> torch module, or NumPy model when ``numpy``."""
    preset: dict[str, Any]
    """ClassifierConfig fields that differ from the class defaults for this net."""
    help: str
    numpy: bool = False
    """A NumPy network (trained by :class:`rlkit.supervised.numpy_learner.NumpyLearner` with plain SGD)."""
    in_channels: int = 0
    """Channels the net takes (0: the data's); gray images are repeated to fill three."""
    pad_to: int = 0
    """Zero-pad smaller images to this side (the GAN critic takes 32x32: 28x28 digits are padded)."""
    reads: tuple[str, ...] = ()
    """The net-shape fields (:data:`SHAPE_FIELDS`) its builder reads; a flag for any other one is refused."""


@dataclass(frozen=True)
class GANNet:
    """A generator and a critic trained together on an image data set."""

    job: ClassVar[str] = "gan"
    preset: dict[str, Any]
    help: str


@dataclass(frozen=True)
class VideoNet:
    """A video classifier: ``--task ucf101``, trained on single frames or on clips."""

    job: ClassVar[str] = "video"
    build: Callable[[ClassifierConfig, int], nn.Module]
    """(video config, num_classes) -> the model."""
    preset: dict[str, Any]
    help: str
    clips: bool
    """Trains on clips of ``clip_length`` frames (else on single frames)."""
    stats: tuple[tuple[float, ...], tuple[float, ...]] = field(default=STATS["imagenet"])
    """Normalization of frames in [0, 1]: what its weight files expect."""
    channels_first: bool = False
    """Takes clips as (C, T, H, W), torchvision's 3D layout (else (T, C, H, W))."""
    pretrained: bool = True
    """Accepts a --pretrained weight file (its head ``fc`` is replaced)."""
    reads: tuple[str, ...] = ()
    """The net-shape fields (:data:`SHAPE_FIELDS`) its builder reads; a flag for any other one is refused."""
    input: str = "frames"
    """What it reads: ``frames`` (video files or --frames-dir), ``flow`` (--flow-dir, stacks of --flow-stack flow
    fields) or ``features`` (--features-dir, per-frame feature vectors)."""

    @property
    def unit(self) -> str:
        """What one sample is called in metrics: frame, clip, stack (of flow fields) or sequence (of features)."""
        return {"flow": "stack", "features": "sequence"}.get(self.input, "clip" if self.clips else "frame")


SHAPE_FIELDS = ("width", "hidden", "conv_channels", "kernel_size", "depth", "growth", "lstm_hidden", "lstm_grid",
                "flow_stack", "dropout", "bn_recalibration")
"""Config fields that only some kinds of net read (their shape, their dropout, the batch-norm statistics of those
with dropout before batch norm): a net that does not read one must not accept its flag silently."""


def check_shape_flags(net: str, args: Any) -> None:
    """Refuse, in one line, a net-shape flag (``--depth``) that ``net`` would ignore."""
    reads = getattr(NETS.get(net), "reads", SHAPE_FIELDS)
    for name in SHAPE_FIELDS:
        if getattr(args, name, None) is not None and name not in reads:
            users = [n for n, row in NETS.items() if name in getattr(row, "reads", ())]
            # The nets of the same kind (image, video) first: those are what this run could use instead.
            users = [n for n in users if type(NETS[n]) is type(NETS.get(net))] or users
            flag = "--" + name.replace("_", "-")
            verb = "shapes" if name in SHAPE_FIELDS[:9] else "applies to"
            raise UserError(f"{flag} {verb} the {', '.join(users)} net{'s' * (len(users) > 1)}; {net} does not read "
                            f"it: drop {flag}")


def _numpy_mlp(config: ClassifierConfig, channels: int, size: int, classes: int) -> Any:
    return numpy_nn.mlp(channels * size * size, config.hidden, classes)


def _numpy_cnn(config: ClassifierConfig, channels: int, size: int, classes: int) -> Any:
    return numpy_nn.cnn(channels, size, config.conv_channels, config.kernel_size, classes)


def _deep_cnn(config: ClassifierConfig, channels: int, size: int, classes: int) -> nn.Module:
    widths = tuple(max(1, round(c * config.width)) for c in DEFAULT_CHANNELS)
    return DeepCNN(num_classes=classes, in_channels=channels, image_size=size, channels=widths, dropout=config.dropout)


def _cifar_resnet(config: ClassifierConfig, channels: int, size: int, classes: int) -> nn.Module:
    return resnets.CifarResNet(num_classes=classes, in_channels=channels, dropout=config.dropout, width=config.width)


def _densenet_bc(config: ClassifierConfig, channels: int, size: int, classes: int) -> nn.Module:
    return densenets.densenet_bc_cifar(config.depth, config.growth, num_classes=classes, in_channels=channels,
                                       drop_rate=config.dropout)


def _densenet121(config: ClassifierConfig, channels: int, size: int, classes: int) -> nn.Module:
    return densenets.densenet121(num_classes=classes, in_channels=channels)


def _sequence(cell: str) -> Callable[[ClassifierConfig, int, int, int], nn.Module]:
    def build(config: ClassifierConfig, channels: int, size: int, classes: int) -> nn.Module:
        return recurrent.SequenceClassifier(classes, channels, size, hidden=config.hidden, cell=cell,
                                            dropout=config.dropout)

    return build


def _discriminator(config: ClassifierConfig, channels: int, size: int, classes: int) -> nn.Module:
    return DiscriminatorAsClassifier(Discriminator(classes, channels, size, width=max(1, round(196 * config.width))))


def _imagenet_resnet(name: str) -> Callable[..., nn.Module]:
    def build(config: ClassifierConfig, channels: int, size: int, classes: int) -> nn.Module:
        return getattr(resnets, name)(num_classes=classes, in_channels=channels)

    return build


def _frame_net(name: str) -> Callable[[ClassifierConfig, int], nn.Module]:
    def build(config: ClassifierConfig, classes: int) -> nn.Module:
        if config.width != 1.0:
            raise UserError(f"frame-{name} has the published widths (its ImageNet files must fit): drop --width")
        return getattr(video_nets, f"frame_{name}")(num_classes=classes)

    return build


def _r3d18(config: ClassifierConfig, classes: int) -> nn.Module:
    return video_nets.r3d_18(num_classes=classes, width=config.width)


def _resnet3d_50(config: ClassifierConfig, classes: int) -> nn.Module:
    return video_nets.resnet3d_50(num_classes=classes, width=config.width)


def _cnn_lstm(config: Any, classes: int) -> nn.Module:
    encoder = resnets.CifarResNet(num_classes=0, dropout=config.dropout, width=config.width)
    return video_nets.CNNLSTM(classes, encoder, hidden=config.lstm_hidden, dropout=config.dropout,
                              grid=config.lstm_grid)


def _flow_net(name: str) -> Callable[[Any, int], nn.Module]:
    def build(config: Any, classes: int) -> nn.Module:
        return getattr(video_nets, f"flow_{name}")(num_classes=classes, stack=config.flow_stack)

    return build


def _feature_lstm(config: Any, classes: int) -> nn.Module:
    # The LSTM's input width is the features' own, recorded when they were extracted.
    dim = int(read_feature_meta(config.features_dir)["dim"])
    return video_nets.FeatureLSTM(dim, classes, hidden=config.lstm_hidden, dropout=config.dropout)


_NUMPY_RECIPE = {"optimizer": "sgd", "momentum": 0.0, "schedule": "step", "step_epochs": 5, "gamma": 0.1,
                 "augment": False}
_IMAGENET = {"epochs": 5, "learning_rate": 1e-4, "input_size": 224}
_FRAMES = {"epochs": 10, "batch_size": 32, "learning_rate": 1e-4, "input_size": 224}
# Simonyan and Zisserman test each video on 25 stacks of 10 flow fields; the whole net is fine-tuned.
_FLOW = {**_FRAMES, "test_clips": 25, "flow_stack": 10}

NETS: dict[str, ImageNet | GANNet | VideoNet] = {
    "numpy-mlp": ImageNet(_numpy_mlp, {**_NUMPY_RECIPE, "epochs": 10, "batch_size": 32, "learning_rate": 0.1},
                          "one hidden ReLU layer in NumPy (assignment 1)", numpy=True, reads=("hidden",)),
    "numpy-cnn": ImageNet(_numpy_cnn, {**_NUMPY_RECIPE, "epochs": 6, "batch_size": 32, "learning_rate": 0.05},
                          "one convolution with several channels in NumPy (assignment 2)", numpy=True,
                          reads=("conv_channels", "kernel_size")),
    "cnn": ImageNet(_deep_cnn, {"epochs": 30, "dropout": 0.25},
                    "8 conv + 3 FC layers with batch norm and dropout (assignment 3)",
                    reads=("width", "dropout", "bn_recalibration")),
    "resnet": ImageNet(_cifar_resnet, {"epochs": 30}, "the assignment-4 ResNet for 32x32 images",
                       reads=("width", "dropout", "bn_recalibration")),
    # Huang et al. train with augmentation and no dropout (dropout 0.2 only without augmentation).
    "densenet": ImageNet(_densenet_bc, {"epochs": 30, "dropout": 0.0},
                         "DenseNet-BC for 32x32 images (--depth 100 --growth 12: BC-100-12, 0.8M parameters)",
                         reads=("depth", "growth", "dropout", "bn_recalibration")),
    # Row-by-row MNIST: no augmentation (a shifted digit is a different sequence), clipping as is usual for LSTMs.
    **{cell: ImageNet(_sequence(cell), {"epochs": 15, "hidden": 128, "augment": False, "dropout": 0.0,
                                        "max_grad_norm": 1.0, "schedule": "cosine"},
                      f"an {cell.upper()} reading the image row by row (MNIST: 28 steps of 28 pixels), --hidden units",
                      reads=("hidden", "dropout"))
       for cell in recurrent.CELLS},
    # Assignment 5a: Adam 1e-4 divided by 10 at epochs 50 and 75, the template's crop and colour jitter.
    "discriminator": ImageNet(_discriminator, {"epochs": 100, "learning_rate": 1e-4, "schedule": "multistep",
                                               "milestones": (50, 75), "augmentation": "resized-crop-jitter",
                                               "dropout": 0.0},
                              "the assignment-5 GAN critic (8 convs of 196, LayerNorm) trained as a classifier",
                              pad_to=32, reads=("width",)),
    "acgan": GANNet({}, "ACGAN with WGAN gradient penalty (assignment 5b): a generator and a critic with a class "
                        "head; flags from its own config"),
    "resnet18": ImageNet(_imagenet_resnet("resnet18"), _IMAGENET,
                         "ImageNet ResNet-18 (torchvision keys; --pretrained FILE to fine-tune)", in_channels=3),
    "resnet50": ImageNet(_imagenet_resnet("resnet50"), _IMAGENET,
                         "ImageNet ResNet-50 (torchvision keys; --pretrained FILE to fine-tune)", in_channels=3),
    "densenet121": ImageNet(_densenet121, _IMAGENET,
                            "ImageNet DenseNet-121 (torchvision keys; --pretrained FILE to fine-tune)", in_channels=3),
    "frame-resnet50": VideoNet(_frame_net("resnet50"), _FRAMES,
                               "UCF-101 from single frames (assignment 6a): ImageNet ResNet-50 with a new head "
                               "(--pretrained FILE); a video sums its frames' log-probabilities", clips=False),
    "frame-resnet18": VideoNet(_frame_net("resnet18"), _FRAMES, "frame-resnet50 with a ResNet-18, cheaper",
                               clips=False),
    "r3d18": VideoNet(_r3d18, {"epochs": 10, "batch_size": 16, "learning_rate": 1e-4, "input_size": 112},
                      "UCF-101 from 16-frame clips (assignment 6b): R3D-18 (--pretrained Kinetics-400 file, "
                      "torchvision keys); a video sums its clips' log-probabilities",
                      clips=True, stats=KINETICS_STATS, channels_first=True, reads=("width",)),
    # The course's later assignment 6b: Hara et al.'s Kinetics ResNet-50, 16-frame 224x224 clips, only layer4[0]
    # and the new head trained.
    "resnet3d-50": VideoNet(_resnet3d_50, {"epochs": 10, "batch_size": 8, "learning_rate": 1e-4, "input_size": 224,
                                           "clip_length": 16, "freeze_except": ("layer4.0", "fc")},
                            "UCF-101 from 16-frame clips (assignment 6b, later edition): Hara et al.'s 3D ResNet-50 "
                            "(--pretrained resnet-50-kinetics.pth), training layer4[0] and the head",
                            clips=True, stats=(video_nets.HARA_MEAN, video_nets.HARA_STD), channels_first=True,
                            reads=("width",)),
    "cnn-lstm": VideoNet(_cnn_lstm, {"epochs": 20, "batch_size": 16, "input_size": 112},
                         "UCF-101 from clips: the course's ResNet per frame and an LSTM over the frames",
                         clips=True, pretrained=False,
                         reads=("width", "lstm_hidden", "lstm_grid", "dropout", "bn_recalibration")),
    **{f"flow-{name}": VideoNet(_flow_net(name), _FLOW,
                                f"UCF-101's temporal stream (two-stream networks): an ImageNet {label} "
                                "on stacks of --flow-stack optical-flow fields from --flow-dir (python -m rlkit.data "
                                "extract-flow); --pretrained FILE initializes conv1 by cross-modality averaging",
                                clips=True, stats=FLOW_STATS, input="flow", reads=("flow_stack",))
       for name, label in (("resnet18", "ResNet-18"), ("resnet50", "ResNet-50"))},
    # The course's earlier assignment 6: an LSTM over per-frame features (1024-d there) of a pretrained net.
    "feature-lstm": VideoNet(_feature_lstm, {"epochs": 20, "batch_size": 32, "learning_rate": 1e-3, "dropout": 0.5,
                                             "lstm_hidden": 512, "clip_length": 16},
                             "UCF-101 from per-frame features (python -m rlkit.data extract-features --net NET): an "
                             "LSTM over --clip-length feature vectors from --features-dir",
                             clips=True, pretrained=False, input="features", reads=("lstm_hidden", "dropout")),
}


def _lookup(table: dict[str, Any], name: str, what: str) -> Any:
    if name not in table:
        close = close_names(name, table)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UserError(f"unknown {what} {name!r}{hint}: use one of {', '.join(table)}")
    return table[name]


def get_task(name: str) -> TaskInfo:
    return _lookup(TASKS, name, "--task")


def get_net(name: str) -> ImageNet | GANNet | VideoNet:
    return _lookup(NETS, name, "--net")


def nets_of(job: str) -> list[str]:
    return [name for name, row in NETS.items() if row.job == job]


def check_pair(task: str, net: str) -> None:
    """A video task needs a video net and a video net a video task; either mismatch is a one-line UserError."""
    videos, video_net = get_task(task).videos, get_net(net).job == "video"
    if videos and not video_net:
        raise UserError(f"--task {task} classifies videos and --net {net} images: use one of "
                        f"{', '.join(nets_of('video'))}")
    if video_net and not videos:
        raise UserError(f"--net {net} classifies videos: use --task "
                        f"{' or '.join(t for t, info in TASKS.items() if info.videos)}, not {task}")
