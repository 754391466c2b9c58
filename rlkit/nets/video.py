"""Video classifiers for action recognition (course assignment 6, UCF-101): 3D ResNets with torchvision's keys,
a 2D ResNet applied frame by frame, and a CNN + LSTM.

Input layouts, each the one its published weights or its usual code expect:

* :class:`VideoResNet` (``r3d_18``, ``r2plus1d_18``): clips ``(B, C, T, H, W)``, torchvision's layout, so that
  Kinetics-400 weight files load with :func:`rlkit.nets.pretrained.load_pretrained`.
* :class:`FrameClassifier`: frames ``(B, C, H, W)`` -> ``(B, K)`` for training on single frames, and videos
  ``(B, T, C, H, W)`` -> per-frame logits ``(B, T, K)``.
* :class:`CNNLSTM`: clips ``(B, T, C, H, W)`` -> ``(B, K)``.
* :class:`FlowResNet` (the temporal stream of a two-stream net): stacks of L optical-flow fields ``(B, 2L, H, W)``
  -> ``(B, K)``, an ImageNet ResNet whose first layer takes 2L channels.
* :class:`FeatureLSTM`: sequences of precomputed per-frame features ``(B, T, D)`` -> ``(B, K)``.

A video is scored from several frames or clips by summing their log-probabilities (:func:`sum_log_probs`,
:func:`video_log_probs`): the product of the per-frame distributions, the course's recipe. Two models are combined
with :func:`fuse_log_probs`.

Every net follows :mod:`rlkit.nets.resnet`'s convention: ``features(x)`` is the vector before the head,
``out_features`` its width, the head is ``fc``, ``num_classes=0`` makes ``fc`` an ``nn.Identity``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlkit.nets.recurrent import RecurrentCore
from rlkit.nets.resnet import BasicBlock, Bottleneck, CifarResNet, ResNet, init_resnet_weights, make_stage, resnet18, \
    resnet50

KINETICS_CLASSES = 400
"""Outputs of the published Kinetics-400 heads (torchvision's ``r3d_18-b3b3357e.pth``, ``r2plus1d_18-91a641e6.pth``)."""


# ---------------------------------------------------------------------------------------------------- 3D ResNets
class Conv3DSimple(nn.Conv3d):
    """A full 3x3x3 convolution (R3D). ``midplanes`` is unused; it keeps the signature of :class:`Conv2Plus1D`."""

    def __init__(self, in_planes: int, out_planes: int, midplanes: int | None = None, stride: int = 1,
                 padding: int = 1):
        super().__init__(in_planes, out_planes, kernel_size=(3, 3, 3), stride=stride, padding=padding, bias=False)

    @staticmethod
    def downsample_stride(stride: int) -> tuple[int, int, int]:
        """Stride of the shortcut's 1x1x1 convolution: time and space shrink together."""
        return stride, stride, stride


class Conv2Plus1D(nn.Sequential):
    """A 3x3x3 convolution factored into a spatial 1x3x3 one to ``midplanes`` channels, BN, ReLU, and a temporal
    3x1x1 one (Tran et al. 2018). Keys ``0.weight`` (spatial), ``1.*`` (BN), ``3.weight`` (temporal)."""

    def __init__(self, in_planes: int, out_planes: int, midplanes: int, stride: int = 1, padding: int = 1):
        super().__init__(
            nn.Conv3d(in_planes, midplanes, kernel_size=(1, 3, 3), stride=(1, stride, stride),
                      padding=(0, padding, padding), bias=False),
            nn.BatchNorm3d(midplanes),
            nn.ReLU(inplace=True),
            nn.Conv3d(midplanes, out_planes, kernel_size=(3, 1, 1), stride=(stride, 1, 1), padding=(padding, 0, 0),
                      bias=False),
        )

    @staticmethod
    def downsample_stride(stride: int) -> tuple[int, int, int]:
        return stride, stride, stride


ConvBuilder = type[Conv3DSimple] | type[Conv2Plus1D]


def midplanes(in_planes: int, planes: int) -> int:
    """Channels between the spatial and temporal halves of a (2+1)D convolution: as many parameters as the 3x3x3
    convolution it replaces, ``in*out*27 / (in*9 + 3*out)`` rounded down (torchvision's formula, which the
    Kinetics weight shapes follow: 144, 230, 288, 460, 576, 921, 1152)."""
    return (in_planes * planes * 3 * 3 * 3) // (in_planes * 3 * 3 + 3 * planes)


class BasicBlock3d(nn.Module):
    """torchvision's video basic block: ``conv1`` = (conv, BN, ReLU), ``conv2`` = (conv, BN), shortcut, ReLU.

    Called by :func:`rlkit.nets.resnet.make_stage` as ``BasicBlock3d(in_planes, planes, stride, downsample,
    conv=...)``. Both convolutions of a block use the ``midplanes`` of its first one (so do the weight files).

    Args:
        in_planes: input channels.
        planes: output channels.
        stride: of the first convolution, in time and space.
        downsample: the shortcut where the shape changes (:meth:`shortcut`), else None.
        conv: :class:`Conv3DSimple` (R3D) or :class:`Conv2Plus1D` (R(2+1)D).
    """

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 conv: ConvBuilder = Conv3DSimple):
        super().__init__()
        mid = midplanes(in_planes, planes)
        self.conv1 = nn.Sequential(conv(in_planes, planes, mid, stride), nn.BatchNorm3d(planes), nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(conv(planes, planes, mid), nn.BatchNorm3d(planes))
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample  # registered after conv2: torchvision's key order

    @staticmethod
    def shortcut(in_planes: int, out_planes: int, stride: int, conv: ConvBuilder = Conv3DSimple) -> nn.Sequential:
        """Strided 1x1x1 convolution and BN, keys ``downsample.0.weight``, ``downsample.1.*``."""
        return nn.Sequential(
            nn.Conv3d(in_planes, out_planes, kernel_size=1, stride=conv.downsample_stride(stride), bias=False),
            nn.BatchNorm3d(out_planes))

    def last_norm(self) -> nn.Module:
        """The BN closing the residual branch (zeroed by ``zero_init_residual``)."""
        return self.conv2[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + identity)


def _scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def r3d_stem(in_channels: int = 3, width: float = 1.0) -> nn.Sequential:
    """3x7x7 convolution to 64 channels (times ``width``) with spatial stride 2 (time kept), BN, ReLU: keys
    ``stem.0``, ``stem.1``."""
    width = _scaled(64, width)
    return nn.Sequential(
        nn.Conv3d(in_channels, width, kernel_size=(3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
        nn.BatchNorm3d(width), nn.ReLU(inplace=True))


def r2plus1d_stem(in_channels: int = 3, width: float = 1.0) -> nn.Sequential:
    """1x7x7 spatial convolution to 45 channels, BN, ReLU, 3x1x1 temporal one to 64, BN, ReLU (channels times
    ``width``): keys ``stem.0``, ``stem.1``, ``stem.3``, ``stem.4``."""
    mid, width = _scaled(45, width), _scaled(64, width)
    return nn.Sequential(
        nn.Conv3d(in_channels, mid, kernel_size=(1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
        nn.BatchNorm3d(mid), nn.ReLU(inplace=True),
        nn.Conv3d(mid, width, kernel_size=(3, 1, 1), stride=(1, 1, 1), padding=(1, 0, 0), bias=False),
        nn.BatchNorm3d(width), nn.ReLU(inplace=True))


class VideoResNet(nn.Module):
    """torchvision's video ResNet, with its attribute names so ``state_dict`` keys, order and shapes are
    torchvision's exactly and the Kinetics-400 files load with ``load_pretrained`` (``strict=True``).

    Layout: ``stem`` (no max pool), stages ``layer1..layer4`` of 64, 128, 256, 512 channels (strides 1, 2, 2, 2,
    in time as well as space: 16 frames leave 2 at ``layer4``), global average pool over (T, H, W), ``fc``.

    Args:
        conv: :class:`Conv3DSimple` (R3D) or :class:`Conv2Plus1D` (R(2+1)D), for every stage.
        stem: ``(in_channels, width) -> module`` with 64 x ``width`` output channels: :func:`r3d_stem` (the
            default) or :func:`r2plus1d_stem`.
        layers: blocks per stage, ``(2, 2, 2, 2)`` for the -18 nets.
        num_classes: outputs of ``fc`` (400 for Kinetics); 0 makes the net an encoder of ``out_features`` = 512.
        in_channels: input channels (3 for the published weights).
        width: multiplies every channel count; 1 is the published net (smaller for quick tests on a CPU).
        zero_init_residual: start every block as the identity.
        arch: a name for messages, e.g. ``r3d_18``.

    The published weights expect RGB in [0, 1] normalized with Kinetics' statistics (mean 0.43216, 0.394666,
    0.37645; std 0.22803, 0.22145, 0.216989) on 112x112 crops of frames resized to 128x171.
    """

    def __init__(self, conv: ConvBuilder, stem: Callable[[int, float], nn.Module] = r3d_stem,
                 layers: Sequence[int] = (2, 2, 2, 2), num_classes: int = KINETICS_CLASSES, in_channels: int = 3,
                 width: float = 1.0, zero_init_residual: bool = False, arch: str | None = None):
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"a video ResNet has 4 stages, got layers={tuple(layers)}")
        self.arch = arch or f"VideoResNet({conv.__name__}, {tuple(layers)})"
        planes = [_scaled(c, width) for c in (64, 128, 256, 512)]
        self.stem = stem(in_channels, width)  # it outputs planes[0] channels
        in_planes = planes[0]
        for i, (p, blocks, stride) in enumerate(zip(planes, layers, (1, 2, 2, 2)), start=1):
            self.add_module(f"layer{i}", make_stage(BasicBlock3d, in_planes, p, blocks, stride, conv=conv))
            in_planes = p
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.out_features = in_planes
        self.fc = nn.Linear(in_planes, num_classes) if num_classes else nn.Identity()
        init_resnet_weights(self, zero_init_residual)
        if isinstance(self.fc, nn.Linear):  # torchvision's video head init (its image ResNets keep PyTorch's)
            nn.init.normal_(self.fc.weight, 0.0, 0.01)
            nn.init.zeros_(self.fc.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` clips -> ``(B, out_features)``."""
        if x.ndim != 5:
            raise ValueError(f"expected clips (B, C, T, H, W), got shape {tuple(x.shape)}")
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def r3d_18(num_classes: int = KINETICS_CLASSES, in_channels: int = 3, **kwargs) -> VideoResNet:
    """R3D-18 (Tran et al. 2018): 3x3x3 convolutions throughout; 33,371,472 parameters with 400 classes."""
    return VideoResNet(Conv3DSimple, r3d_stem, (2, 2, 2, 2), num_classes, in_channels, arch="r3d_18", **kwargs)


def r2plus1d_18(num_classes: int = KINETICS_CLASSES, in_channels: int = 3, **kwargs) -> VideoResNet:
    """R(2+1)D-18: every 3x3x3 convolution factored into spatial and temporal ones; 31,505,325 parameters with
    400 classes."""
    return VideoResNet(Conv2Plus1D, r2plus1d_stem, (2, 2, 2, 2), num_classes, in_channels, arch="r2plus1d_18",
                       **kwargs)


# ---------------------------------------------------------------------------------------------------- Hara et al.
HARA_MEAN = (114.7748 / 255, 107.7354 / 255, 99.4750 / 255)
HARA_STD = (1 / 255, 1 / 255, 1 / 255)
"""What Hara et al.'s Kinetics files expect, written for frames in [0, 1]: RGB on the 0-255 scale minus ActivityNet's
mean, not divided by a standard deviation (their code's defaults: ``--mean_dataset activitynet --norm_value 1``,
``std_norm`` off)."""


class Bottleneck3d(nn.Module):
    """Hara et al.'s 3D bottleneck: 1x1x1 to ``planes``, 3x3x3 (strided in time and space), 1x1x1 to 4 x
    ``planes``, each with BN, and the shortcut ``downsample`` (keys ``conv1..3``, ``bn1..3``, ``downsample.0/1``,
    those of their ``resnet-50-kinetics.pth``)."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv3d(in_planes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    @staticmethod
    def shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Sequential:
        """Their shortcut type B: a strided 1x1x1 convolution and BN."""
        return nn.Sequential(nn.Conv3d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False),
                             nn.BatchNorm3d(out_planes))

    def last_norm(self) -> nn.Module:
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class KineticsResNet(nn.Module):
    """The 3D ResNet of Hara et al. (2018, "Can spatiotemporal 3D CNNs retrace the history of 2D CNNs and
    ImageNet?"; github.com/kenshohara/3D-ResNets-PyTorch), with its module names, so its Kinetics-400 files
    (``resnet-50-kinetics.pth``: ``--model resnet --model_depth 50 --resnet_shortcut B``) load with
    :func:`rlkit.nets.pretrained.load_pretrained` (their ``state_dict`` entry, DataParallel's ``module.`` prefix
    removed).

    Layout: ``conv1`` 7x7x7 with stride (1, 2, 2), ``bn1``, ReLU, 3x3x3 max pool with stride 2, stages
    ``layer1..layer4`` (strides 1, 2, 2, 2 in time and space), global average pool (their fixed-size pool, which for
    the 16 x 112 x 112 clips it was trained on is the same thing), ``fc``. Clips are ``(B, C, T, H, W)``.

    Args:
        layers: bottlenecks per stage, ``(3, 4, 6, 3)`` for ResNet-50.
        num_classes: outputs of ``fc`` (400 for Kinetics); 0 makes the net an encoder of ``out_features`` = 2048.
        width: multiplies every channel count; 1 is the published net.
    """

    def __init__(self, layers: Sequence[int] = (3, 4, 6, 3), num_classes: int = KINETICS_CLASSES,
                 in_channels: int = 3, width: float = 1.0, arch: str = "resnet-50"):
        super().__init__()
        self.arch = arch
        planes = [_scaled(c, width) for c in (64, 128, 256, 512)]
        self.conv1 = nn.Conv3d(in_channels, planes[0], kernel_size=7, stride=(1, 2, 2), padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(planes[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        in_planes = planes[0]
        for i, (p, blocks, stride) in enumerate(zip(planes, layers, (1, 2, 2, 2)), start=1):
            self.add_module(f"layer{i}", make_stage(Bottleneck3d, in_planes, p, blocks, stride))
            in_planes = p * Bottleneck3d.expansion
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.out_features = in_planes
        self.fc = nn.Linear(in_planes, num_classes) if num_classes else nn.Identity()
        init_resnet_weights(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` clips -> ``(B, out_features)``."""
        if x.ndim != 5:
            raise ValueError(f"expected clips (B, C, T, H, W), got shape {tuple(x.shape)}")
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def resnet3d_50(num_classes: int = KINETICS_CLASSES, **kwargs) -> KineticsResNet:
    """Hara et al.'s 3D ResNet-50 (the course's later assignment 6b fine-tunes its Kinetics file)."""
    return KineticsResNet((3, 4, 6, 3), num_classes, arch="resnet-50", **kwargs)


# ---------------------------------------------------------------------------------------------------- 2D per frame
class FrameClassifier(nn.Module):
    """A 2D image classifier applied to each frame of a video (assignment 6a).

    The backbone's modules become this module's own (no prefix), so its ``state_dict`` keys are the backbone's:
    ImageNet files load with ``load_pretrained(model, "resnet50-0676ba61.pth", skip=("fc.",))`` and
    ``freeze(model, ("layer4", "fc"))`` trains the last block and the head, exactly as for the bare ResNet.

    Args:
        backbone: a net with ``features()`` and ``out_features`` (e.g. :func:`rlkit.nets.resnet.resnet50`); its
            own head is dropped.
        num_classes: outputs of the new head ``fc`` (101 for UCF-101); 0 makes it an encoder.
    """

    def __init__(self, backbone: nn.Module, num_classes: int):
        super().__init__()
        if not hasattr(backbone, "features") or not hasattr(backbone, "out_features"):
            raise TypeError(f"{type(backbone).__name__} has no features() and out_features to classify frames with")
        if list(backbone.parameters(recurse=False)) or list(backbone.buffers(recurse=False)):
            raise TypeError(f"{type(backbone).__name__} keeps tensors outside its submodules: they would be lost")
        backbone.fc = nn.Identity()  # the old head would only hold memory
        for name, child in backbone.named_children():
            if name != "fc":
                self.add_module(name, child)
        # Held in a tuple so it is not registered a second time (that would add "backbone."-prefixed keys); its
        # submodules are the ones registered above, so .to(), .train() and the optimizer reach them.
        self._backbone = (backbone,)
        self.arch = getattr(backbone, "arch", type(backbone).__name__)
        self.out_features = backbone.out_features
        self.fc = nn.Linear(self.out_features, num_classes) if num_classes else nn.Identity()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, out_features)``, or ``(B, T, C, H, W)`` -> ``(B, T, out_features)``."""
        if x.ndim == 4:
            return self._backbone[0].features(x)
        if x.ndim != 5:
            raise ValueError(f"expected frames (B, C, H, W) or videos (B, T, C, H, W), got shape {tuple(x.shape)}")
        return self._backbone[0].features(x.flatten(0, 1)).unflatten(0, x.shape[:2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Frames ``(B, C, H, W)`` -> logits ``(B, K)``; videos ``(B, T, C, H, W)`` -> per-frame logits
        ``(B, T, K)``."""
        return self.fc(self.features(x))

    def video_log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """Videos ``(B, T, C, H, W)`` -> per-video scores ``(B, K)``: the sum of the frames' log-probabilities."""
        return sum_log_probs(self(x))


def frame_resnet50(num_classes: int = 101, **kwargs) -> FrameClassifier:
    """The assignment's single-frame model: an ImageNet ResNet-50 with a new 2048 -> ``num_classes`` head."""
    return FrameClassifier(resnet50(num_classes=0, **kwargs), num_classes)


def frame_resnet18(num_classes: int = 101, **kwargs) -> FrameClassifier:
    """An ImageNet ResNet-18 per frame (512 features), a cheaper :func:`frame_resnet50`."""
    return FrameClassifier(resnet18(num_classes=0, **kwargs), num_classes)


# ---------------------------------------------------------------------------------------------------- CNN + LSTM
def grid_pool(encoder: nn.Module, grid: int) -> nn.Module:
    """Make an rlkit ResNet encoder pool its last feature map to a ``grid`` x ``grid`` of cells instead of one
    vector, so its features keep where things are (``out_features`` grows ``grid**2``-fold); returns it.

    A global pool keeps what is in a frame but not where, so an LSTM over globally pooled features sees motion
    only through changes of appearance: enough for most UCF-101 actions, not for a blob that only moves. Works on
    :class:`rlkit.nets.resnet.ResNet` (``avgpool``) and :class:`~rlkit.nets.resnet.CifarResNet` (``pool``), whose
    ``features()`` flatten the pooled map; pools hold no weights, so weight files still load.
    """
    for name in ("avgpool", "pool"):
        pool = getattr(encoder, name, None)
        if isinstance(pool, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            setattr(encoder, name, type(pool)(grid))
            encoder.out_features = encoder.out_features // _cells(pool.output_size) * grid * grid
            return encoder
    raise TypeError(f"{type(encoder).__name__} has no adaptive 'avgpool' or 'pool' to turn into a grid")


def _cells(size: int | tuple[int | None, ...]) -> int:
    return size * size if isinstance(size, int) else int(np.prod(size))


class CNNLSTM(nn.Module):
    """A 2D encoder per frame, an LSTM over the frames' features, and a head on its last hidden state (the
    course's older assignment 6).

    Args:
        num_classes: outputs of ``fc``; 0 makes the net an encoder of ``out_features`` = ``hidden``.
        encoder: any net with ``out_features`` (its ``features()`` is used when it has one, so a classifier's head
            is skipped); default the course's small :class:`rlkit.nets.resnet.CifarResNet` without head. Pass
            ``resnet18(num_classes=0)`` to start from ImageNet weights (``load_pretrained(model.encoder, ...)``).
        hidden: LSTM units.
        num_layers: stacked LSTM layers.
        dropout: between stacked LSTM layers, and on the last hidden state before ``fc``.
        grid: > 1 pools each frame's feature map to ``grid`` x ``grid`` cells (:func:`grid_pool`) so the LSTM
            sees where things move; 1 keeps the encoder's global pool.
    """

    def __init__(self, num_classes: int, encoder: nn.Module | None = None, hidden: int = 256, num_layers: int = 1,
                 dropout: float = 0.0, grid: int = 1):
        super().__init__()
        self.encoder = encoder if encoder is not None else CifarResNet(num_classes=0)
        if grid > 1:
            grid_pool(self.encoder, grid)
        if not hasattr(self.encoder, "out_features"):
            raise TypeError(f"{type(self.encoder).__name__} has no out_features: the LSTM needs its width")
        self.lstm = nn.LSTM(self.encoder.out_features, hidden, num_layers, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.out_features = hidden
        self.fc = nn.Linear(hidden, num_classes) if num_classes else nn.Identity()

    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, C, H, W)`` -> the encoder's ``(B, T, encoder.out_features)``."""
        if x.ndim != 5:
            raise ValueError(f"expected clips (B, T, C, H, W), got shape {tuple(x.shape)}")
        encode = getattr(self.encoder, "features", self.encoder)
        return encode(x.flatten(0, 1)).unflatten(0, x.shape[:2])

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, C, H, W)`` -> the last layer's hidden state after the last frame, ``(B, hidden)``."""
        _, (hidden, _) = self.lstm(self.frame_features(x))
        return self.dropout(hidden[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


# ---------------------------------------------------------------------------------------------------- two-stream
def cross_modality_weight(rgb: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Cross-modality initialization (Wang et al. 2016, "Temporal Segment Networks"): the first convolution of an
    RGB net ``(out, 3, kh, kw)`` -> ``(out, in_channels, kh, kw)``, every input channel the mean of the three RGB
    ones, so a flow net starts from ImageNet's filters."""
    if rgb.ndim != 4 or rgb.shape[1] != 3:
        raise ValueError(f"expected an RGB convolution weight (out, 3, kh, kw), got shape {tuple(rgb.shape)}")
    return rgb.mean(dim=1, keepdim=True).repeat(1, in_channels, 1, 1)


class FlowResNet(ResNet):
    """The temporal stream of a two-stream net (Simonyan and Zisserman 2014): an ImageNet ResNet on stacks of
    ``stack`` optical-flow fields, ``(B, 2 * stack, H, W)`` (x1, y1, x2, y2, ...) -> logits ``(B, K)``.

    Its keys are torchvision's; only ``conv1.weight`` is ``(64, 2 * stack, 7, 7)``. An ImageNet weight file loads
    with :func:`rlkit.nets.pretrained.load_pretrained`, which calls :meth:`adapt_pretrained` to turn the file's RGB
    ``conv1`` into 2L channels by :func:`cross_modality_weight`.
    """

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: Sequence[int], num_classes: int,
                 stack: int = 10, arch: str = "flow-resnet"):
        if stack < 1:
            raise ValueError(f"a flow stack holds at least one field, got {stack}")
        super().__init__(block, layers, num_classes, in_channels=2 * stack, arch=arch)
        self.stack = stack

    def adapt_pretrained(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A file's RGB ``conv1.weight`` made 2L-channel (files of a flow net of this stack pass unchanged)."""
        rgb = state.get("conv1.weight")
        if rgb is None or rgb.ndim != 4 or rgb.shape[1] != 3 or self.conv1.in_channels == 3:
            return state
        return {**state, "conv1.weight": cross_modality_weight(rgb, self.conv1.in_channels)}


def flow_resnet18(num_classes: int = 101, stack: int = 10) -> FlowResNet:
    """ResNet-18 on stacks of ``stack`` flow fields."""
    return FlowResNet(BasicBlock, (2, 2, 2, 2), num_classes, stack, arch="flow-resnet18")


def flow_resnet50(num_classes: int = 101, stack: int = 10) -> FlowResNet:
    """ResNet-50 on stacks of ``stack`` flow fields."""
    return FlowResNet(Bottleneck, (3, 4, 6, 3), num_classes, stack, arch="flow-resnet50")


# ---------------------------------------------------------------------------------------------------- features
class FeatureLSTM(nn.Module):
    """An LSTM over a video's precomputed per-frame features and a head on its last output (the course's earlier
    assignment 6: features of a pretrained frame net, then an LSTM classifies the sequence).

    Args:
        in_features: width of each frame's features (2048 for a ResNet-50's).
        num_classes: outputs of ``fc``; 0 makes the net an encoder of ``out_features`` = ``hidden``.
        hidden: LSTM units.
        num_layers: stacked LSTM layers.
        dropout: on the features entering the LSTM and on its last output.
    """

    def __init__(self, in_features: int, num_classes: int, hidden: int = 512, num_layers: int = 1,
                 dropout: float = 0.0):
        super().__init__()
        self.core = RecurrentCore(in_features, hidden, "lstm", num_layers)
        self.dropout = nn.Dropout(dropout)
        self.in_features, self.out_features = in_features, hidden
        self.fc = nn.Linear(hidden, num_classes) if num_classes else nn.Identity()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, in_features)`` -> the last layer's output after the last frame, ``(B, hidden)``."""
        if x.ndim != 3 or x.shape[-1] != self.in_features:
            raise ValueError(f"expected features (B, T, {self.in_features}), got shape {tuple(x.shape)}")
        steps = self.dropout(x).transpose(0, 1)  # the core is time-major
        out, _ = self.core(steps, self.core.initial_state(x.shape[0], x.device))
        return self.dropout(out[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


# ---------------------------------------------------------------------------------------------------- video scores
def sum_log_probs(logits: torch.Tensor) -> torch.Tensor:
    """Per-video scores from per-frame (or per-clip) logits ``(..., N, K)`` -> ``(..., K)``: the sum over the
    N frames of ``log_softmax``. Its argmax is the class the frames agree on most (a product of the frames'
    distributions); unlike averaging logits it does not let one confident frame's scale dominate."""
    return F.log_softmax(logits, dim=-1).sum(dim=-2)


def video_log_probs(model: nn.Module, x: torch.Tensor, chunk: int = 0) -> torch.Tensor:
    """Score videos from several frames or clips each: ``x`` is ``(B, N, *sample)`` where ``model`` takes
    ``(M, *sample)`` to logits ``(M, K)`` (a frame model and ``(B, N, C, H, W)``, a 3D net and
    ``(B, N, C, T, H, W)``, a CNN + LSTM and ``(B, N, T, C, H, W)``); returns :func:`sum_log_probs` ``(B, K)``.

    ``chunk`` > 0 runs at most that many samples through ``model`` at once (25 frames x 32 videos of 224x224 do
    not fit every GPU).
    """
    flat = x.flatten(0, 1)
    if chunk > 0:
        logits = torch.cat([model(part) for part in flat.split(chunk)])
    else:
        logits = model(flat)
    return sum_log_probs(logits.unflatten(0, x.shape[:2]))


def fuse_log_probs(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray, weight: float = 0.5
                   ) -> torch.Tensor | np.ndarray:
    """Combine two models' per-video scores ``(N, K)`` (assignment 6c): ``weight`` on ``a``, the rest on ``b``.

    Each input is first renormalized to log-probabilities (``log_softmax``; a summed score is a log-probability
    up to a per-video constant), then the weighted sum is renormalized: a weighted geometric mean of the two
    distributions. A sum over many frames is sharper than one over few clips, so pass each model's sum divided by
    its number of frames or clips to weigh the models as ``weight`` says. Returns NumPy for NumPy inputs.
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1], got {weight}")
    as_numpy = isinstance(a, np.ndarray) and isinstance(b, np.ndarray)
    a_t, b_t = torch.as_tensor(a), torch.as_tensor(b)
    if a_t.shape != b_t.shape:
        raise ValueError(f"the two score arrays differ in shape: {tuple(a_t.shape)} and {tuple(b_t.shape)}")
    fused = F.log_softmax(weight * F.log_softmax(a_t, dim=-1) + (1 - weight) * F.log_softmax(b_t, dim=-1), dim=-1)
    return fused.numpy() if as_numpy else fused
