"""The course's assignment-5 GAN networks for 32x32 images: a critic with an auxiliary classifier head (ACGAN with a
Wasserstein critic) and a generator from noise to images in [-1, 1].

Layouts (IE 534's assignment, as the students' published solutions build it; widths all 196 by default):

* :class:`Discriminator`: eight ``conv 3x3 -> LayerNorm(C, H, W) -> LeakyReLU`` blocks, stride 2 at blocks 2, 4
  and 8 (32 -> 16 -> 8 -> 4), a max pool over the last 4x4 map, then two heads on the pooled vector: ``fc1`` (the
  critic's score) and ``fc10`` (class logits).
* :class:`Generator`: ``fc`` from the noise to 196x4x4, then ``up conv conv conv up conv up`` (``up``: a 4x4
  transposed convolution of stride 2 that doubles the side; ``conv``: 3x3 at stride 1), each with BatchNorm and
  ReLU, and a last 3x3 convolution to the image channels with tanh.

LayerNorm rather than BatchNorm in the critic matters: the WGAN gradient penalty is a per-sample gradient, and
batch norm would couple the samples of a batch (Gulrajani et al. 2017, section 4).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import nn

DISCRIMINATOR_STRIDES: tuple[int, ...] = (1, 2, 1, 2, 1, 1, 1, 2)
"""Strides of the eight critic convolutions: 32x32 inputs end at 4x4."""

GENERATOR_LAYOUT: tuple[str, ...] = ("up", "conv", "conv", "conv", "up", "conv", "up")
"""The generator's blocks between ``fc`` and the output convolution (three ``up`` blocks: 4 -> 8 -> 16 -> 32)."""


def _conv_output_side(side: int, stride: int) -> int:
    # kernel 3, padding 1: floor((side + 2 - 3) / stride) + 1
    return (side - 1) // stride + 1


class ConvBlock(nn.Module):
    """``conv 3x3 (padding 1) -> LayerNorm over (C, H, W) -> LeakyReLU``; the norm's shape needs the output side."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, out_side: int, negative_slope: float):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1)
        self.norm = nn.LayerNorm([out_channels, out_side, out_side])
        self.act = nn.LeakyReLU(negative_slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class Discriminator(nn.Module):
    """The assignment's critic with an auxiliary classifier: ``forward(x) -> (critic (B,), class_logits (B, K))``.

    Blocks are numbered from 1 as in the assignment (``conv1`` .. ``conv8``): ``features(x, [2, 8])`` returns the
    activations after blocks 2 and 8 (after their LeakyReLU), for feature visualization.

    Args:
        num_classes: outputs of ``fc10`` (its name is the assignment's, whatever K is).
        in_channels: image channels.
        image_size: side of the square input (LayerNorm's shape depends on it); 28x28 images end at 4x4 too.
        width: channels of every convolution (196 in the assignment).
        strides: of the convolutions, one per block.
        negative_slope: of the LeakyReLU. The assignment says only "leaky ReLU"; 0.2 is the slope of the WGAN-GP
            reference code (Gulrajani et al.'s ``LeakyReLU(x, alpha=0.2)``) and of DCGAN (Radford et al. 2016).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32, width: int = 196,
                 strides: Sequence[int] = DISCRIMINATOR_STRIDES, negative_slope: float = 0.2):
        super().__init__()
        blocks, channels, side = [], in_channels, image_size
        for stride in strides:
            side = _conv_output_side(side, stride)
            blocks.append(ConvBlock(channels, width, stride, side, negative_slope))
            channels = width
        self.blocks = nn.ModuleList(blocks)
        self.pool = nn.MaxPool2d(side)  # the whole last map (4x4 on 32x32 input) -> 1x1
        self.out_features = width
        self.fc1 = nn.Linear(width, 1)
        self.fc10 = nn.Linear(width, num_classes)

    def features(self, x: torch.Tensor, layers: Iterable[int]) -> dict[int, torch.Tensor]:
        """Activations ``(B, width, H_i, W_i)`` after each block in ``layers`` (numbered 1..8), computing no more
        blocks than the deepest one asked for."""
        wanted = sorted(set(layers))
        if not wanted or wanted[0] < 1 or wanted[-1] > len(self.blocks):
            raise ValueError(f"layers are numbered 1..{len(self.blocks)}, got {list(layers)}")
        out: dict[int, torch.Tensor] = {}
        for index, block in enumerate(self.blocks[:wanted[-1]], start=1):
            x = block(x)
            if index in wanted:
                out[index] = x
        return out

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` images -> the pooled vector ``(B, width)`` both heads read."""
        for block in self.blocks:
            x = block(x)
        return torch.flatten(self.pool(x), 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(x)
        return self.fc1(h)[:, 0], self.fc10(h)


class DiscriminatorAsClassifier(nn.Module):
    """The discriminator alone as an image classifier (assignment 5a): ``forward`` returns only the class logits,
    so :class:`rlkit.supervised.classifier.Classifier` trains it like any other net. Its keys are the
    discriminator's under ``discriminator.``."""

    def __init__(self, discriminator: Discriminator):
        super().__init__()
        self.discriminator = discriminator

    def features(self, x: torch.Tensor, layers: Iterable[int]) -> dict[int, torch.Tensor]:
        """The discriminator's :meth:`Discriminator.features`."""
        return self.discriminator.features(x, layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.discriminator(x)[1]


def discriminator_from_state_dict(state: Mapping[str, torch.Tensor], negative_slope: float = 0.2) -> Discriminator:
    """Rebuild a :class:`Discriminator` (default strides) from its ``state_dict`` alone and load it.

    The sizes are read off the tensors: ``width`` and ``in_channels`` from the first convolution, ``image_size``
    from the first LayerNorm, ``num_classes`` from ``fc10``. A ``discriminator.`` prefix (the keys of
    :class:`DiscriminatorAsClassifier`) is accepted.

    Raises:
        KeyError, RuntimeError: the tensors are not those of a discriminator with the default strides.
    """
    state = {k.removeprefix("discriminator."): v for k, v in state.items()}
    width, in_channels = state["blocks.0.conv.weight"].shape[:2]
    image_size = state["blocks.0.norm.weight"].shape[-1]
    num_classes = state["fc10.weight"].shape[0]
    net = Discriminator(num_classes, in_channels, image_size, width, negative_slope=negative_slope)
    net.load_state_dict(state)
    return net


class Generator(nn.Module):
    """The assignment's generator: noise ``(B, noise_dim)`` -> images ``(B, out_channels, image_size, image_size)``
    in [-1, 1].

    ``fc -> BatchNorm1d -> ReLU``, reshape to ``(width, image_size / 8, image_size / 8)``, then the blocks of
    ``layout`` with BatchNorm2d and ReLU after each (``up``: ConvTranspose2d kernel 4, stride 2, padding 1, which
    doubles the side exactly; ``conv``: 3x3, stride 1, padding 1), then a 3x3 convolution to ``out_channels`` and
    tanh (no norm there: the output is the image).

    Args:
        noise_dim: length of the noise vector (128; its first ``num_classes`` entries carry the class one-hot).
        out_channels: image channels.
        width: channels of every hidden layer (196 in the assignment).
        image_size: output side; a multiple of 8 (three doublings).
        layout: the hidden blocks; exactly three ``up`` ones.
    """

    def __init__(self, noise_dim: int = 128, out_channels: int = 3, width: int = 196, image_size: int = 32,
                 layout: Sequence[str] = GENERATOR_LAYOUT):
        super().__init__()
        ups = sum(block == "up" for block in layout)
        if image_size % (2 ** ups) or any(block not in ("up", "conv") for block in layout):
            raise ValueError(f"image_size must be a multiple of {2 ** ups} and layout made of 'up' and 'conv', "
                             f"got {image_size} and {tuple(layout)}")
        self.noise_dim, self.width, self.start = noise_dim, width, image_size // 2 ** ups
        self.fc = nn.Linear(noise_dim, width * self.start * self.start)
        self.fc_norm = nn.BatchNorm1d(width * self.start * self.start)
        blocks: list[nn.Module] = []
        for block in layout:
            conv = (nn.ConvTranspose2d(width, width, kernel_size=4, stride=2, padding=1) if block == "up"
                    else nn.Conv2d(width, width, kernel_size=3, stride=1, padding=1))
            blocks.append(nn.Sequential(conv, nn.BatchNorm2d(width), nn.ReLU(inplace=True)))
        self.blocks = nn.Sequential(*blocks)
        self.out = nn.Conv2d(width, out_channels, kernel_size=3, stride=1, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.fc_norm(self.fc(z))).view(-1, self.width, self.start, self.start)
        return torch.tanh(self.out(self.blocks(x)))
