"""Heads: feature vectors -> action values. Each takes the encoder's ``out_features``."""

from __future__ import annotations

import math

import torch
from torch import nn

from rlkit.nets.noisy import NoisyLinear


def make_linear(in_features: int, out_features: int, noisy_std: float = 0.0) -> nn.Module:
    """A linear layer, or with ``noisy_std > 0`` a :class:`NoisyLinear` with that sigma_0 (Fortunato et al.)."""
    if noisy_std:
        return NoisyLinear(in_features, out_features, noisy_std)
    return nn.Linear(in_features, out_features)


class QHead(nn.Module):
    """Q(s, a) for every action: ``(B, F) -> (B, A)``, or with ``atoms > 1`` the logits of a categorical return
    distribution per action (C51), ``(B, A, atoms)``.

    ``hidden > 0`` puts a hidden layer of that width before the output (the head then owns the 512-unit layer of
    the Atari network, so noisy nets can make it noisy); ``noisy_std > 0`` makes the head's layers noisy.
    """

    def __init__(self, in_features: int, n_actions: int, atoms: int = 1, hidden: int = 0, noisy_std: float = 0.0):
        super().__init__()
        self.n_actions, self.atoms = n_actions, atoms
        self.hidden: nn.Module = nn.Identity()
        if hidden:
            self.hidden = nn.Sequential(make_linear(in_features, hidden, noisy_std), nn.ReLU())
            in_features = hidden
        self.linear = make_linear(in_features, n_actions * atoms, noisy_std)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out = self.linear(self.hidden(features))
        return out if self.atoms == 1 else out.view(len(out), self.n_actions, self.atoms)


class DuelingQHead(nn.Module):
    """Dueling aggregation (Wang et al. 2016): ``Q = V + A - mean_a A``, ``(B, F) -> (B, A)``.

    V and A are separate streams on the shared features, each with its own ``hidden``-unit layer (Wang et al.'s
    Atari network: 512 each, after the convolutions) or, with ``hidden=0``, one linear layer each. Subtracting
    the mean advantage makes V and A identifiable without changing the greedy action. With ``atoms > 1`` the
    aggregation is per atom of the return distribution's logits, ``(B, A, atoms)``, as in Rainbow (Hessel et al.
    2018); ``noisy_std > 0`` makes both streams noisy.
    """

    def __init__(self, in_features: int, n_actions: int, hidden: int = 0, atoms: int = 1, noisy_std: float = 0.0):
        super().__init__()
        self.n_actions, self.atoms = n_actions, atoms

        def stream(out_features: int) -> nn.Module:
            if not hidden:
                return make_linear(in_features, out_features, noisy_std)
            return nn.Sequential(make_linear(in_features, hidden, noisy_std), nn.ReLU(),
                                 make_linear(hidden, out_features, noisy_std))

        self.value, self.advantage = stream(atoms), stream(n_actions * atoms)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        value = self.value(features).view(len(features), 1, self.atoms)
        advantage = self.advantage(features).view(len(features), self.n_actions, self.atoms)
        q = value + advantage - advantage.mean(dim=1, keepdim=True)
        return q.view(len(features), self.n_actions) if self.atoms == 1 else q


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
