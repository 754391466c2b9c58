"""Residual networks (He et al. 2016): torchvision's ImageNet ResNets, key for key, and the course's small-image
ResNet.

Every model here follows one convention: ``features(x)`` returns the pooled vector ``(B, out_features)`` before
the classification head, the head is the attribute ``fc``, and ``num_classes=0`` makes ``fc`` an ``nn.Identity``
so the net is a pure encoder. The stages are the attributes ``layer1``, ``layer2``, ... in every model, so one
list of prefixes (``("layer4", "fc")``) means the same in :func:`rlkit.nets.pretrained.freeze` for all of them.

The building blocks (:func:`make_stage`, :func:`init_resnet_weights`) take the block class as an argument and
handle any convolution and batch-norm dimension, so the video ResNets (3D blocks, same ``downsample.0/.1`` keys)
can be added beside these without changing them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

NormLayer = Callable[[int], nn.Module]
"""Builds a normalization layer for a number of channels (``nn.BatchNorm2d``, or see :func:`norm_layer`)."""


def norm_layer(name: str) -> NormLayer:
    """``batch``: BatchNorm2d (the published nets). ``group``: GroupNorm with groups of 16 channels (Wu & He
    2018's alternative to 32 groups; it keeps a narrow layer from turning into a per-channel norm). GroupNorm
    does not depend on the batch, which matters where a net acts on single observations but learns from batches
    (reinforcement learning) and nobody switches it between train and eval mode."""
    if name == "batch":
        return nn.BatchNorm2d
    if name == "group":
        return lambda channels: nn.GroupNorm(math.gcd(channels, max(1, channels // 16)), channels)
    raise ValueError(f"unknown norm {name!r}: use batch or group")


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias (a norm layer follows)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class StridedConv1x1(nn.Conv2d):
    """A strided 1x1 convolution computed as the stride-1 one on every ``stride``-th pixel (the same function, the
    same parameters and keys): oneDNN's weight gradient of the strided 1x1 kernel in channels-last crashes the
    process on some AVX2-only CPUs (AMD EPYC, torch 2.13: 2-7 input channels at 28x28 or 32x32)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sy, sx = self.stride
        return F.conv2d(x[..., ::sy, ::sx], self.weight, self.bias)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution without bias."""
    if stride == 1:
        return nn.Conv2d(in_planes, out_planes, kernel_size=1, bias=False)
    return StridedConv1x1(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


def projection_shortcut(in_planes: int, out_planes: int, stride: int,
                        norm: NormLayer = nn.BatchNorm2d) -> nn.Sequential:
    """The shortcut where a block changes shape (He et al.'s option B): a strided 1x1 convolution and a norm,
    keys ``downsample.0.weight`` and ``downsample.1.*``."""
    return nn.Sequential(conv1x1(in_planes, out_planes, stride), norm(out_planes))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and an identity (or projected) shortcut: ``relu(bn2(conv2(relu(bn1(conv1 x)))) + x)``.

    Args:
        in_planes: input channels.
        planes: output channels (``expansion`` is 1).
        stride: of the first convolution (2 halves the resolution).
        downsample: the shortcut where the shape changes (:func:`projection_shortcut`), else None.
        norm: builds the normalization layers.
    """

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 norm: NormLayer = nn.BatchNorm2d):
        super().__init__()
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = norm(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm(planes)
        self.downsample = downsample

    shortcut = staticmethod(projection_shortcut)

    def last_norm(self) -> nn.Module:
        """The norm layer closing the residual branch (zeroed by ``zero_init_residual``)."""
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4), with the stride on the 3x3 convolution: torchvision's "ResNet v1.5",
    about 0.5% more ImageNet top-1 than the paper's stride on the first 1x1 (same parameters, same keys).

    Args: as :class:`BasicBlock`; the block outputs ``planes * 4`` channels.
    """

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 norm: NormLayer = nn.BatchNorm2d):
        super().__init__()
        self.conv1 = conv1x1(in_planes, planes)
        self.bn1 = norm(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = norm(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = norm(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    shortcut = staticmethod(projection_shortcut)

    def last_norm(self) -> nn.Module:
        """The norm layer closing the residual branch."""
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def make_stage(block: type[nn.Module], in_planes: int, planes: int, blocks: int, stride: int = 1,
               **block_kwargs) -> nn.Sequential:
    """``blocks`` residual blocks; the first one strides and, where the shape changes, gets the projection shortcut.

    ``block`` is a class called as ``block(in_planes, planes, stride, downsample, **block_kwargs)`` with a class
    attribute ``expansion`` and a static ``shortcut(in_planes, out_planes, stride, **block_kwargs)``: BasicBlock,
    Bottleneck, or a 3D block of a video ResNet.

    Output channels are ``planes * block.expansion``. ``block_kwargs`` (e.g. ``norm``) go to every block and to
    the shortcut.
    """
    out_planes = planes * block.expansion
    downsample = None
    if stride != 1 or in_planes != out_planes:
        downsample = block.shortcut(in_planes, out_planes, stride, **block_kwargs)
    layers = [block(in_planes, planes, stride, downsample, **block_kwargs)]
    layers += [block(out_planes, planes, **block_kwargs) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def init_resnet_weights(model: nn.Module, zero_init_residual: bool = False) -> None:
    """torchvision's initialization: Kaiming-normal convolutions (fan_out, ReLU gain), norm layers at weight 1
    and bias 0; linear layers keep PyTorch's default. ``zero_init_residual`` zeroes the last norm of each residual
    branch, so every block starts as the identity (Goyal et al. 2017: +0.2-0.3% ImageNet top-1)."""
    for module in model.modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm)) and module.affine:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    if zero_init_residual:
        for module in model.modules():
            if hasattr(module, "last_norm") and getattr(module.last_norm(), "weight", None) is not None:
                nn.init.zeros_(module.last_norm().weight)


def _head(in_features: int, num_classes: int) -> nn.Module:
    return nn.Linear(in_features, num_classes) if num_classes else nn.Identity()


class ResNet(nn.Module):
    """The ImageNet ResNet, with torchvision's attribute names so its ``state_dict`` keys and shapes are
    torchvision's exactly and published weight files load with ``strict=True``.

    Layout: 7x7/2 conv, BN, ReLU, 3x3/2 max pool; stages ``layer1..layer4`` of 64, 128, 256, 512 planes (strides
    1, 2, 2, 2); global average pool; ``fc``.

    Args:
        block: :class:`BasicBlock` (ResNet-18/34) or :class:`Bottleneck` (ResNet-50 and deeper).
        layers: blocks per stage, e.g. ``(2, 2, 2, 2)``.
        num_classes: outputs of ``fc``; 0 makes the net an encoder of ``out_features`` = 512 x expansion.
        in_channels: input channels (3 for the published weights).
        zero_init_residual: start every block as the identity (see :func:`init_resnet_weights`).
        arch: a name for messages, e.g. ``resnet18`` (set by the factories).
    """

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: Sequence[int], num_classes: int = 1000,
                 in_channels: int = 3, zero_init_residual: bool = False, arch: str | None = None):
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"an ImageNet ResNet has 4 stages, got layers={tuple(layers)}")
        self.arch = arch or f"ResNet({block.__name__}, {tuple(layers)})"
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        e = block.expansion
        self.layer1 = make_stage(block, 64, 64, layers[0], stride=1)
        self.layer2 = make_stage(block, 64 * e, 128, layers[1], stride=2)
        self.layer3 = make_stage(block, 128 * e, 256, layers[2], stride=2)
        self.layer4 = make_stage(block, 256 * e, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.out_features = 512 * e
        self.fc = _head(self.out_features, num_classes)
        init_resnet_weights(self, zero_init_residual)
        # Channels-last convolutions run faster on CPU (oneDNN's native layout) and on tensor-core GPUs. Only the
        # strides change: keys, shapes and the function computed are the same.
        self.to(memory_format=torch.channels_last)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` images (ImageNet-normalized for the published weights) -> ``(B, out_features)``."""
        x = x.contiguous(memory_format=torch.channels_last)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def resnet18(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> ResNet:
    """ResNet-18: basic blocks (2, 2, 2, 2), 11,689,512 parameters with 1000 classes."""
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes, in_channels, arch="resnet18", **kwargs)


def resnet34(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> ResNet:
    """ResNet-34: basic blocks (3, 4, 6, 3), 21,797,672 parameters with 1000 classes."""
    return ResNet(BasicBlock, (3, 4, 6, 3), num_classes, in_channels, arch="resnet34", **kwargs)


def resnet50(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> ResNet:
    """ResNet-50: bottleneck blocks (3, 4, 6, 3), 25,557,032 parameters with 1000 classes."""
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes, in_channels, arch="resnet50", **kwargs)


CIFAR_STAGES: tuple[tuple[int, int, int], ...] = ((32, 2, 1), (64, 4, 2), (128, 4, 2), (256, 2, 2))
"""The course's assignment-4 stages as (channels, blocks, stride)."""


class CifarResNet(nn.Module):
    """The course's assignment-4 ResNet for small images (32x32 CIFAR, 28x28 Fashion-MNIST).

    Stem: 3x3 conv (as many channels as the first stage), BN, ReLU, dropout. Then one stage of basic blocks per
    ``(channels, blocks, stride)`` in ``stages`` (``layer1``, ``layer2``, ...), a global max pool and ``fc``.

    The pool is an adaptive max pool to 1x1 rather than a fixed window: on 32x32 and 28x28 inputs the last stage
    is 4x4 either way, where both are the same max over 4x4, and the adaptive pool also takes any other size
    (84x84 Atari frames) without changing ``out_features``.

    Args:
        num_classes: outputs of ``fc``; 0 makes the net an encoder.
        in_channels: image channels (3 for CIFAR, 1 for Fashion-MNIST, 4 for an Atari frame stack).
        stages: ``(channels, blocks, stride)`` per stage; the default is the assignment's.
        dropout: probability of the dropout after the stem.
        width: multiplies every channel count (0.5: a quarter of the compute).
        stem_stride: stride of the stem convolution; 2 halves the resolution at once for large inputs.
        norm: ``batch`` (the assignment) or ``group`` (see :func:`norm_layer`).
        zero_init_residual: start every block as the identity.
    """

    def __init__(self, num_classes: int = 100, in_channels: int = 3,
                 stages: Sequence[tuple[int, int, int]] = CIFAR_STAGES, dropout: float = 0.2, width: float = 1.0,
                 stem_stride: int = 1, norm: str = "batch", zero_init_residual: bool = False):
        super().__init__()
        make_norm = norm_layer(norm)
        channels = [max(1, round(c * width)) for c, _, _ in stages]
        self.conv1 = conv3x3(in_channels, channels[0], stem_stride)
        self.bn1 = make_norm(channels[0])
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout)
        self.stage_names: list[str] = []
        in_planes = channels[0]
        for i, (planes, (_, blocks, stride)) in enumerate(zip(channels, stages), start=1):
            self.add_module(f"layer{i}", make_stage(BasicBlock, in_planes, planes, blocks, stride, norm=make_norm))
            self.stage_names.append(f"layer{i}")
            in_planes = planes
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.out_features = in_planes
        self.fc = _head(self.out_features, num_classes)
        init_resnet_weights(self, zero_init_residual)
        self.to(memory_format=torch.channels_last)  # faster convolutions, same function (see ResNet)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, H, W)`` float images -> ``(B, out_features)``."""
        x = x.contiguous(memory_format=torch.channels_last)
        x = self.dropout(self.relu(self.bn1(self.conv1(x))))
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return torch.flatten(self.pool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))
