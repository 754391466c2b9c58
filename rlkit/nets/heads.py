"""Heads: feature vectors -> action values. Each takes the encoder's ``out_features``."""

from __future__ import annotations

import math

import torch
from torch import nn


class QHead(nn.Module):
    """One linear layer to Q(s, a) for every action: ``(B, F) -> (B, A)``."""

    def __init__(self, in_features: int, n_actions: int):
        super().__init__()
        self.linear = nn.Linear(in_features, n_actions)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)


class DuelingQHead(nn.Module):
    """Dueling aggregation (Wang et al. 2016): ``Q = V + A - mean_a A``, ``(B, F) -> (B, A)``.

    V and A are separate streams on the shared features, each with its own ``hidden``-unit layer (Wang et al.'s
    Atari network: 512 each, after the convolutions) or, with ``hidden=0``, one linear layer each. Subtracting
    the mean advantage makes V and A identifiable without changing the greedy action.
    """

    def __init__(self, in_features: int, n_actions: int, hidden: int = 0):
        super().__init__()

        def stream(out_features: int) -> nn.Module:
            if not hidden:
                return nn.Linear(in_features, out_features)
            return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, out_features))

        self.value, self.advantage = stream(1), stream(n_actions)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        advantage = self.advantage(features)
        return self.value(features) + advantage - advantage.mean(dim=-1, keepdim=True)


class ParallelLinear(nn.Module):
    """K independent linear layers applied as one batched product: ``(B, F) or (K, B, F) -> (K, B, O)``.

    The K-major layout lets every layer run as a single ``baddbmm`` with no transposes in between.
    """

    def __init__(self, num_heads: int, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_heads, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(num_heads, out_features))
        bound = 1.0 / math.sqrt(in_features)  # nn.Linear's default initialization, per head
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.expand(self.weight.shape[0], *x.shape)
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight)


class BootstrappedQHeads(nn.Module):
    """K independent Q heads on one shared torso (Osband et al. 2016): ``(B, F) -> (B, K, A)``.

    With ``hidden > 0`` each head has its own hidden layer, as in the paper's Atari network (conv torso, then a
    512-unit layer and the output per head). The heads run as batched products, so K heads cost one call each.
    """

    def __init__(self, in_features: int, n_actions: int, num_heads: int = 10, hidden: int = 0):
        super().__init__()
        self.num_heads = num_heads
        layers: list[nn.Module] = []
        if hidden:
            layers += [ParallelLinear(num_heads, in_features, hidden), nn.ReLU()]
            in_features = hidden
        layers.append(ParallelLinear(num_heads, in_features, n_actions))
        self.layers = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features).transpose(0, 1)
