"""AlphaZero's policy/value network for board games (Silver et al. 2017, "Methods: neural network architecture"),
built from the ResNet blocks of :mod:`rlkit.nets.resnet`: a 3x3 convolution stem, a tower of residual blocks at
the board's resolution, and two heads."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from rlkit.nets.resnet import BasicBlock, conv1x1, conv3x3, init_resnet_weights, make_stage


class PolicyValueNet(nn.Module):
    """``(B, C, H, W)`` board planes -> ``(move logits (B, num_actions), value (B,) in [-1, 1])``.

    Policy head: 1x1 convolution to 2 planes, BN, ReLU, a linear layer to the moves. Value head: 1x1 convolution
    to 1 plane, BN, ReLU, a hidden linear layer of ``value_hidden`` units, ReLU, a linear layer to one number, tanh.
    No stride anywhere: a 6x7 board stays 6x7 through the tower.
    """

    def __init__(self, obs_shape: Sequence[int], num_actions: int, channels: int = 256, blocks: int = 19,
                 value_hidden: int = 256):
        super().__init__()
        in_channels, height, width = obs_shape
        cells = height * width
        self.stem = nn.Sequential(conv3x3(in_channels, channels), nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        self.tower = make_stage(BasicBlock, channels, channels, blocks, norm=nn.BatchNorm2d)
        self.policy = nn.Sequential(conv1x1(channels, 2), nn.BatchNorm2d(2), nn.ReLU(inplace=True), nn.Flatten(),
                                    nn.Linear(2 * cells, num_actions))
        self.value = nn.Sequential(conv1x1(channels, 1), nn.BatchNorm2d(1), nn.ReLU(inplace=True), nn.Flatten(),
                                   nn.Linear(cells, value_hidden), nn.ReLU(inplace=True), nn.Linear(value_hidden, 1),
                                   nn.Tanh())
        init_resnet_weights(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.tower(self.stem(x))
        return self.policy(features), self.value(features).squeeze(-1)
