"""Densely connected networks (Huang et al. 2017): torchvision's ImageNet DenseNet-121, key for key, and the
paper's DenseNet-BC for 32x32 images.

A dense block's layers each see the concatenation of every feature map before them in the block and add
``growth`` channels to it. Each layer is a bottleneck (BN-ReLU-Conv1x1 to ``bn_size * growth`` channels,
BN-ReLU-Conv3x3 to ``growth``); between blocks a transition (BN-ReLU-Conv1x1, AvgPool 2x2) halves the resolution
and multiplies the channels by the compression (0.5: the "C" of DenseNet-BC).

The module names are torchvision's (``features.conv0``, ``features.denseblock1.denselayer1.norm1``,
``features.transition1.conv``, ``features.norm5``, ``classifier``), so torchvision's weight files load with
``strict=True``. Two things differ from the ResNets of :mod:`rlkit.nets.resnet` because of those names: the
head is ``classifier`` (declared as ``head_name``, which :mod:`rlkit.nets.pretrained` reads), and the pooled
vector before it comes from :meth:`DenseNet.encode`, since ``features`` is the convolutional trunk.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from rlkit.errors import UserError
from rlkit.nets.resnet import NormLayer, norm_layer


class DenseLayer(nn.Module):
    """The bottleneck layer: ``conv2(relu(norm2(conv1(relu(norm1(x))))))``, ``growth`` new channels.

    Args:
        in_channels: channels of the concatenated input.
        growth: channels it adds (k).
        bn_size: the 1x1 convolution's width is ``bn_size * growth`` (4 in the paper).
        drop_rate: dropout after the 3x3 convolution (torchvision's ``drop_rate``; 0 in the published nets).
        norm: builds the normalization layers.
    """

    def __init__(self, in_channels: int, growth: int, bn_size: int = 4, drop_rate: float = 0.0,
                 norm: NormLayer = nn.BatchNorm2d):
        super().__init__()
        width = bn_size * growth
        self.norm1 = norm(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=1, bias=False)
        self.norm2 = norm(width)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, growth, kernel_size=3, padding=1, bias=False)
        self.drop_rate = drop_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # relu1 may act in place: norm1 returns a new tensor, so the concatenated input the later layers also
        # read is left as it is.
        out = self.conv1(self.relu1(self.norm1(x)))
        out = self.conv2(self.relu2(self.norm2(out)))
        return F.dropout(out, p=self.drop_rate, training=self.training) if self.drop_rate else out


class DenseBlock(nn.ModuleDict):
    """``layers`` dense layers (keys ``denselayer1``, ...); outputs ``in_channels + layers * growth`` channels."""

    def __init__(self, layers: int, in_channels: int, growth: int, **layer_kwargs):
        super().__init__()
        for i in range(layers):
            self[f"denselayer{i + 1}"] = DenseLayer(in_channels + i * growth, growth, **layer_kwargs)
        self.out_channels = in_channels + layers * growth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = [x]
        for layer in self.values():
            maps.append(layer(torch.cat(maps, 1)))
        return torch.cat(maps, 1)


class Transition(nn.Sequential):
    """BN, ReLU, 1x1 convolution to ``out_channels``, 2x2 average pool (keys ``norm``, ``conv``)."""

    def __init__(self, in_channels: int, out_channels: int, norm: NormLayer = nn.BatchNorm2d):
        super().__init__(OrderedDict([
            ("norm", norm(in_channels)),
            ("relu", nn.ReLU(inplace=True)),
            ("conv", nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)),
            ("pool", nn.AvgPool2d(kernel_size=2, stride=2)),
        ]))


def init_densenet_weights(model: nn.Module) -> None:
    """torchvision's DenseNet initialization: Kaiming-normal convolutions (PyTorch's default fan_in mode, unlike
    the ResNets' fan_out), norm layers at weight 1 and bias 0, linear biases 0 (weights keep PyTorch's default)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight)
        elif isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm)) and module.affine:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.zeros_(module.bias)


# torchvision's published DenseNet files were saved before PyTorch 0.4 forbade dots in module names: their
# layer keys read "denselayer1.norm.1.weight" where the modules are now "norm1" (torchvision renames on load).
_LEGACY_LAYER_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|"
                               r"running_var|num_batches_tracked))$")


def rename_legacy_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``...denselayer1.norm.1.weight`` -> ``...denselayer1.norm1.weight`` (the published files' old names);
    other keys unchanged."""
    renamed = {}
    for key, value in state.items():
        match = _LEGACY_LAYER_KEY.match(key)
        renamed[match.group(1) + match.group(2) if match else key] = value
    return renamed


class DenseNet(nn.Module):
    """A DenseNet with torchvision's module names.

    Layout: a stem (``conv0``; with ``stem_pool``, torchvision's ImageNet stem: 7x7/2 conv, ``norm0``, ReLU,
    3x3/2 max pool ``pool0``), dense blocks ``denseblock1..n`` with ``transition1..n-1`` between them, ``norm5``,
    ReLU, global average pool, ``classifier``.

    Args:
        blocks: dense layers per block, e.g. ``(6, 12, 24, 16)`` for DenseNet-121.
        growth: channels each layer adds (k).
        init_features: channels of the stem convolution.
        bn_size: bottleneck width factor.
        compression: channel factor of the transitions (theta); a transition keeps ``floor(theta * m)`` of m.
        num_classes: outputs of ``classifier``; 0 makes it ``nn.Identity``, an encoder of ``out_features``.
        in_channels: input channels.
        stem_pool: the ImageNet stem (7x7/2 conv, BN, ReLU, max pool); else one 3x3 convolution (the paper's
            CIFAR nets) with stride ``stem_stride``.
        stem_stride: stride of the 3x3 stem convolution (2 halves large inputs at once; ImageNet stem: ignored).
        drop_rate: dropout after each layer's 3x3 convolution.
        norm: ``batch`` (the published nets) or ``group`` (see :func:`rlkit.nets.resnet.norm_layer`).
        arch: a name for messages, e.g. ``densenet121``.
    """

    head_name = "classifier"
    """The attribute holding the classification head (torchvision's name; the ResNets' is ``fc``)."""

    def __init__(self, blocks: Sequence[int], growth: int, init_features: int, bn_size: int = 4,
                 compression: float = 0.5, num_classes: int = 1000, in_channels: int = 3, stem_pool: bool = True,
                 stem_stride: int = 1, drop_rate: float = 0.0, norm: str = "batch", arch: str | None = None):
        super().__init__()
        self.arch = arch or f"DenseNet({tuple(blocks)}, growth={growth})"
        make_norm = norm_layer(norm)
        if stem_pool:
            stem = [("conv0", nn.Conv2d(in_channels, init_features, kernel_size=7, stride=2, padding=3, bias=False)),
                    ("norm0", make_norm(init_features)), ("relu0", nn.ReLU(inplace=True)),
                    ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1))]
        else:  # the first dense layer's BN-ReLU follows directly
            stem = [("conv0", nn.Conv2d(in_channels, init_features, kernel_size=3, stride=stem_stride, padding=1,
                                        bias=False))]
        self.features = nn.Sequential(OrderedDict(stem))
        channels = init_features
        for i, layers in enumerate(blocks, start=1):
            block = DenseBlock(layers, channels, growth, bn_size=bn_size, drop_rate=drop_rate, norm=make_norm)
            self.features.add_module(f"denseblock{i}", block)
            channels = block.out_channels
            if i < len(blocks):
                reduced = math.floor(compression * channels)
                self.features.add_module(f"transition{i}", Transition(channels, reduced, make_norm))
                channels = reduced
        # torchvision calls the last norm "norm5" whatever the number of blocks.
        self.features.add_module("norm5", make_norm(channels))
        self.out_features = channels
        self.classifier = nn.Linear(channels, num_classes) if num_classes else nn.Identity()
        init_densenet_weights(self)
        self.to(memory_format=torch.channels_last)  # faster convolutions, same function (see rlkit.nets.resnet)

    rename_legacy_keys = staticmethod(rename_legacy_keys)
    """Read by :func:`rlkit.nets.pretrained.load_pretrained` before it checks a weight file's keys."""

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` images -> ``(B, out_features)``, the pooled vector before the classifier."""
        x = self.features(x.contiguous(memory_format=torch.channels_last))
        return torch.flatten(F.adaptive_avg_pool2d(F.relu(x), 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.encode(x))


def densenet121(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> DenseNet:
    """DenseNet-121 (torchvision's layout): growth 32, blocks (6, 12, 24, 16), 64 stem channels, the ImageNet
    stem; 1024 features before the classifier."""
    return DenseNet((6, 12, 24, 16), 32, 64, num_classes=num_classes, in_channels=in_channels, stem_pool=True,
                    arch="densenet121", **kwargs)


def densenet_bc_cifar(depth: int = 100, growth: int = 12, num_classes: int = 10, in_channels: int = 3,
                      **kwargs) -> DenseNet:
    """The paper's DenseNet-BC for 32x32 images: a 3x3 stem of ``2 * growth`` channels, three dense blocks of
    ``(depth - 4) / 6`` bottleneck layers, compression 0.5.

    ``depth`` counts the weighted layers: the stem, two convolutions per dense layer, the two transitions and
    the classifier (100 with growth 12: DenseNet-BC-100-12 of the paper's CIFAR table).
    """
    if depth < 10 or (depth - 4) % 6:
        raise UserError(f"a DenseNet-BC has --depth 6n + 4 with n >= 1 (10, 16, 22, ..., 100), got {depth}")
    if growth < 1:
        raise UserError(f"--growth must be positive, got {growth}")
    layers = (depth - 4) // 6
    return DenseNet((layers,) * 3, growth, 2 * growth, num_classes=num_classes, in_channels=in_channels,
                    stem_pool=False, arch=f"densenet-bc-{depth}-{growth}", **kwargs)
