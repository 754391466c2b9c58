"""The course's assignment-3 deep CNN for CIFAR-10: a VGG-style stack of 3x3 convolutions, then three fully
connected layers."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


DEFAULT_CHANNELS = (64, 64, 128, 128, 256, 256, 256, 256)
"""Eight 3x3 convolutions, widening as the pools shrink the image."""


class DeepCNN(nn.Module):
    """Convolutions in pairs: ``[conv3x3 -> BN -> ReLU] x 2 -> max pool 2x2 -> dropout`` per pair, then
    ``Linear -> ReLU -> dropout`` for each width in ``fc``, then the head ``fc`` (a Linear to ``num_classes``).

    The defaults follow the common CIFAR-10 recipe of the assignment: widths doubling every pooling block as in
    VGG (Simonyan & Zisserman 2015) up to 256, two hidden layers of 500, dropout 0.25 after each pooling block and
    0.5 between the fully connected layers (Srivastava et al. 2014's values for convolutional and dense layers).
    Eight convolutions give four pools: 32x32 ends at 2x2 and 28x28 at 1x1 (7 -> 3 -> 1, the odd row dropped).

    Modules: ``blocks`` (one Sequential per pooling block), ``hidden`` (flatten and the hidden fully connected
    layers, ending with dropout), ``fc`` (the head). ``features(x)`` is the output of ``hidden``
    (``out_features`` = ``fc[-1]`` widths, 500 by default); ``num_classes=0`` makes ``fc`` an ``nn.Identity``.

    Args:
        num_classes: outputs of the head.
        in_channels: image channels (3 for CIFAR, 1 for Fashion-MNIST).
        image_size: side of the square input, to size the first fully connected layer.
        channels: output channels of each convolution; a pool follows every second one.
        fc: widths of the hidden fully connected layers.
        dropout: probability of the dropout after each pooling block.
        fc_dropout: probability of the dropout after each hidden fully connected layer.
        batch_norm: BatchNorm after each convolution (without it the convolutions get a bias).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32,
                 channels: Sequence[int] = DEFAULT_CHANNELS, fc: Sequence[int] = (500, 500),
                 dropout: float = 0.25, fc_dropout: float = 0.5, batch_norm: bool = True):
        super().__init__()
        if len(channels) % 2:
            raise ValueError(f"channels come in pairs (a pool after every second conv), got {len(channels)}")
        pools = len(channels) // 2
        side = image_size >> pools  # each 2x2 pool floors: floor(floor(s / 2) / 2) = floor(s / 4)
        if side < 1:
            raise ValueError(f"{pools} poolings need images of at least {2 ** pools} pixels, got {image_size}")
        blocks = []
        width = in_channels
        for first, second in zip(channels[::2], channels[1::2]):
            layers: list[nn.Module] = []
            for out in (first, second):
                layers.append(nn.Conv2d(width, out, kernel_size=3, padding=1, bias=not batch_norm))
                layers += [nn.BatchNorm2d(out)] if batch_norm else []
                layers.append(nn.ReLU(inplace=True))
                width = out
            layers += [nn.MaxPool2d(2), nn.Dropout(dropout)]
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.Sequential(*blocks)
        hidden: list[nn.Module] = [nn.Flatten()]
        width = width * side * side
        for size in fc:
            hidden += [nn.Linear(width, size), nn.ReLU(inplace=True), nn.Dropout(fc_dropout)]
            width = size
        self.hidden = nn.Sequential(*hidden)
        self.out_features = width
        self.fc = nn.Linear(width, num_classes) if num_classes else nn.Identity()
        # Channels-last convolutions run faster on CPU (oneDNN's native layout); the function computed is the same.
        self.blocks.to(memory_format=torch.channels_last)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, image_size, image_size)`` float images -> ``(B, out_features)``."""
        return self.hidden(self.blocks(x.contiguous(memory_format=torch.channels_last)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))
