"""Encoders: observations -> feature vectors. Each reports its output width as ``out_features``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from rlkit.errors import UserError
from rlkit.nets.densenet import densenet_bc_cifar
from rlkit.nets.resnet import CifarResNet


def as_unit_scale(obs: torch.Tensor) -> torch.Tensor:
    """Observations as float32 on the scale the networks learn from: uint8 ones are bytes (Atari's frames, a
    camera's, a console's RAM) and are divided by 255 into [0, 1]; float ones are taken as they come, already on
    the user's scale (SB3 likewise scales uint8 images only). The caller's tensor is never changed."""
    if obs.dtype == torch.uint8:
        return obs.to(torch.float32).div_(255.0)  # a new tensor, so scaling in place is safe
    return obs.float()


class UnitScaleFlatten(nn.Module):
    """``(B, *shape)`` observations -> ``(B, prod(shape))`` float32 on the networks' scale (:func:`as_unit_scale`)."""

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return as_unit_scale(obs).flatten(1)


class MLP(nn.Module):
    """Flatten, then fully connected layers with an activation after each; uint8 inputs are read as x / 255
    (:func:`as_unit_scale`).

    Args:
        in_features: width of the flattened input.
        hidden: layer widths, e.g. ``(256, 256)``; the last is ``out_features``.
        activation: module class applied after every layer.
    """

    def __init__(self, in_features: int, hidden: Sequence[int] = (256, 256), activation: type[nn.Module] = nn.ReLU):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        # forward applies the layers itself: for the small MLPs of RL the nn.Module call around each layer costs
        # more than the layer (acting runs one observation at a time). A plain list: nothing registered twice.
        self._pairs: list[tuple[nn.Linear, nn.Module]] = []
        width = in_features
        for size in hidden:
            linear, act = nn.Linear(width, size), activation()
            layers += [linear, act]
            self._pairs.append((linear, act))
            width = size
        self.layers = nn.Sequential(*layers)  # holds the parameters (state_dict keys layers.1.weight, ...)
        self.out_features = width

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = as_unit_scale(obs).flatten(1)  # the nn.Flatten at layers[0]
        for linear, act in self._pairs:  # what self.layers(x) computes, without the per-module call overhead
            x = act.forward(F.linear(x, linear.weight, linear.bias))
        return x


NATURE_CONVS = ((32, 8, 4), (64, 4, 2), (64, 3, 1))
"""(channels, kernel, stride) of Mnih et al.'s (2015) convolutions."""
DATA_EFFICIENT_CONVS = ((32, 5, 5), (64, 5, 5))
"""The data-efficient Rainbow's (van Hasselt et al. 2019) two convolutions: 84 -> 16 -> 3 pixels, 576 features,
about a fifth of the Nature network's compute, for the many updates per step of the Atari 100k regime."""


def convolved_size(size: int, convs: Sequence[tuple[int, int, int]]) -> int:
    """Pixels left on a side of ``size`` after unpadded ``(channels, kernel, stride)`` convolutions (< 1: none)."""
    for _, kernel, stride in convs:
        if size < kernel:
            return 0
        size = (size - kernel) // stride + 1
    return size


class NatureCNN(nn.Module):
    """The DQN torso of Mnih et al. (2015): three convolutions and a 512-unit layer (or, with ``convs``, another
    stack of ReLU convolutions such as :data:`DATA_EFFICIENT_CONVS`).

    Takes ``(B, C, 84, 84)`` uint8 frames and scales them to [0, 1] inside, so replay can keep bytes (float images
    are taken as they come: :func:`as_unit_scale`); a side must keep at least one pixel through the convolutions
    (36 for the Nature stack). ``features=0`` stops after the convolutions (``out_features`` is then the flattened conv output).
    """

    def __init__(self, in_channels: int = 4, height: int = 84, width: int = 84, features: int = 512,
                 convs: Sequence[tuple[int, int, int]] = NATURE_CONVS):
        super().__init__()
        layers: list[nn.Module] = []
        width_in = in_channels
        for channels, kernel, stride in convs:
            layers += [nn.Conv2d(width_in, channels, kernel_size=kernel, stride=stride), nn.ReLU()]
            width_in = channels
        self.convs = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():
            flat = self.convs(torch.zeros(1, in_channels, height, width)).shape[1]
        self.fc = nn.Sequential(nn.Linear(flat, features), nn.ReLU()) if features else nn.Identity()
        self.out_features = features or flat
        # Channels-last convolutions run ~15% faster on CPU (oneDNN's native layout); same numbers either way.
        self.convs.to(memory_format=torch.channels_last)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        # Scale to float first, then reorder: PyTorch's channels-last copy of uint8 is slower than of float
        # despite the bytes (benchmarks/frame_scaling.py). Same values either way.
        x = as_unit_scale(obs).contiguous(memory_format=torch.channels_last)
        return self.fc(self.convs(x))


class ResNetEncoder(nn.Module):
    """The course's :class:`~rlkit.nets.resnet.CifarResNet` (12 residual blocks) as a torso for image stacks.

    Takes ``(B, C, H, W)`` frames and scales uint8 ones to [0, 1] inside like :class:`NatureCNN`. Changes from
    the classifier, for 84x84 Atari frames and for Q-learning:

    - ``width=0.5`` and a stride-2 stem: a full-width net at 84x84 costs ~15x the compute (about 3 s for one
      32-frame update on a CPU core) for no known gain; this one runs 42 -> 21 -> 11 -> 6 with 16-128 channels
      and ``out_features`` 128.
    - GroupNorm, not BatchNorm: the agent acts on one observation at a time, learns from batches and never
      switches to eval mode, so batch statistics would normalize acting and learning differently.
    - no dropout: it would make the target network's values random.
    """

    def __init__(self, in_channels: int = 4, width: float = 0.5, stem_stride: int = 2, norm: str = "group"):
        super().__init__()
        self.net = CifarResNet(num_classes=0, in_channels=in_channels, dropout=0.0, width=width,
                               stem_stride=stem_stride, norm=norm)
        self.out_features = self.net.out_features

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(as_unit_scale(obs))


class DenseNetEncoder(nn.Module):
    """A small DenseNet-BC (:func:`~rlkit.nets.densenet.densenet_bc_cifar`, depth 40, growth 12: three blocks of
    six bottleneck layers) as a torso for image stacks; ``out_features`` 132.

    Takes ``(B, C, H, W)`` frames and scales uint8 ones to [0, 1] inside like :class:`NatureCNN`. As in
    :class:`ResNetEncoder`: a stride-2 stem (84x84 frames run at 42 -> 21 -> 10 pixels, about the compute of
    that encoder) and GroupNorm, since the agent acts on single observations and never switches to eval mode.
    """

    def __init__(self, in_channels: int = 4, depth: int = 40, growth: int = 12, stem_stride: int = 2,
                 norm: str = "group"):
        super().__init__()
        self.net = densenet_bc_cifar(depth, growth, num_classes=0, in_channels=in_channels,
                                     stem_stride=stem_stride, norm=norm)
        self.out_features = self.net.out_features

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(as_unit_scale(obs))


ENCODERS = ("auto", "nature-cnn", "der-cnn", "mlp", "resnet", "densenet")


CONVOLUTIONS = {"nature-cnn": NATURE_CONVS, "der-cnn": DATA_EFFICIENT_CONVS}
"""The encoders whose unpadded convolutions need images of at least some size."""


def encoder_kind(obs_shape: Sequence[int], kind: str = "auto") -> str:
    """The encoder ``kind`` stands for on ``obs_shape``: ``auto`` is the Nature CNN for images (C, H, W) that
    keep a pixel through its convolutions, else an MLP over the flattened observation (a 7x7 grid world's view, a
    stack of feature maps). An image encoder for vectors, or a convolution stack for images too small for it, is a
    :class:`UserError` naming the fix (the kind comes from a command-line flag)."""
    if kind not in ENCODERS:
        raise UserError(f"unknown encoder {kind!r}: use {', '.join(ENCODERS)}")
    if kind == "auto":
        return "nature-cnn" if len(obs_shape) == 3 and fits(obs_shape, NATURE_CONVS) else "mlp"
    if kind != "mlp" and len(obs_shape) != 3:
        raise UserError(f"the {kind} encoder needs image observations (C, H, W), this env has shape "
                        f"{tuple(obs_shape)}: use --encoder mlp or auto")
    if kind in CONVOLUTIONS and not fits(obs_shape, CONVOLUTIONS[kind]):
        least = next(size for size in range(1, 1000) if convolved_size(size, CONVOLUTIONS[kind]) >= 1)
        raise UserError(f"the {kind} encoder needs images of at least {least}x{least} pixels, this env's are "
                        f"{obs_shape[1]}x{obs_shape[2]}: use --encoder mlp (or auto, which picks it for small "
                        "images), resnet or densenet")
    return kind


def fits(obs_shape: Sequence[int], convs: Sequence[tuple[int, int, int]]) -> bool:
    """Whether (C, H, W) images keep at least one pixel through ``convs``."""
    return min(convolved_size(obs_shape[1], convs), convolved_size(obs_shape[2], convs)) >= 1


def make_encoder(
    obs_shape: Sequence[int],
    kind: str = "auto",
    hidden: Sequence[int] = (256, 256),
    cnn_features: int = 512,
    activation: type[nn.Module] = nn.ReLU,
) -> nn.Module:
    """An encoder for observations of ``obs_shape``.

    ``kind``: ``nature-cnn``, ``der-cnn`` (:data:`DATA_EFFICIENT_CONVS`), ``resnet`` (:class:`ResNetEncoder`)
    or ``densenet`` (:class:`DenseNetEncoder`) for image stacks (C, H, W), ``mlp`` for vectors (and anything
    flattened), ``auto`` as :func:`encoder_kind` picks. ``hidden`` and ``activation`` shape the MLP;
    ``cnn_features`` sizes the Nature CNN's last layer (0: convolutions only). An unknown ``kind``, or one that
    cannot read ``obs_shape``, is a :class:`UserError` (it comes from a command-line flag).
    """
    kind = encoder_kind(obs_shape, kind)
    if kind == "nature-cnn":
        return NatureCNN(*obs_shape, features=cnn_features)
    if kind == "der-cnn":
        return NatureCNN(*obs_shape, features=cnn_features, convs=DATA_EFFICIENT_CONVS)
    if kind == "resnet":
        return ResNetEncoder(obs_shape[0])
    if kind == "densenet":
        return DenseNetEncoder(obs_shape[0])
    return MLP(int(torch.Size(obs_shape).numel()), hidden, activation)
