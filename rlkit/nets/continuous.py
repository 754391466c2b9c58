"""Networks for continuous control off-policy: deterministic tanh actor, squashed Gaussian actor, and an ensemble
of Q(s, a) critics evaluated in one batched pass. Actions live in [-1, 1]; the env maps them to its bounds.

Observations are vectors (an int or a 1-d shape: the MLPs read them flattened) or uint8 images (C, H, W): then
each network reads them through its own Nature CNN, as Stable-Baselines3's ``CnnPolicy`` does for SAC and TD3
(the actor's torso and the critics' shared one are separate networks)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rlkit.nets.encoders import MLP, NatureCNN, as_unit_scale, encoder_kind, make_encoder
from rlkit.nets.heads import ParallelLinear


def image_encoder(obs_shape: int | Sequence[int]) -> NatureCNN | None:
    """The Nature CNN for image observations (C, H, W); None for vectors and images too small for it, which the
    MLPs flatten themselves."""
    shape = (obs_shape,) if isinstance(obs_shape, int) else tuple(obs_shape)
    return make_encoder(shape, "nature-cnn") if encoder_kind(shape) == "nature-cnn" else None


def observation_width(obs_shape: int | Sequence[int], encoder: nn.Module | None) -> int:
    """Width of the features an MLP reads: the encoder's output, or the flattened vector."""
    if encoder is not None:
        return encoder.out_features
    return obs_shape if isinstance(obs_shape, int) else math.prod(obs_shape)


class DeterministicActor(nn.Module):
    """``a = tanh(MLP(s))`` in [-1, 1]: (B, *obs_shape) -> (B, act_dim)."""

    def __init__(self, obs_shape: int | Sequence[int], act_dim: int, hidden: Sequence[int] = (256, 256)):
        super().__init__()
        self.encoder = image_encoder(obs_shape)
        self.torso = MLP(observation_width(obs_shape, self.encoder), hidden)
        self.out = nn.Linear(self.torso.out_features, act_dim)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        features = obs if self.encoder is None else self.encoder(obs)
        return torch.tanh(self.out(self.torso(features)))


class QEnsemble(nn.Module):
    """K independent Q(s, a) networks (K = 2: TD3's and SAC's twin critics) run as one batched MLP.

    ``(B, *obs_shape), (B, act_dim) -> (B, K)``. One set of matrix products instead of K keeps the update lean.
    Image observations pass through one CNN whose features all K critics read.
    """

    def __init__(self, obs_shape: int | Sequence[int], act_dim: int, hidden: Sequence[int] = (256, 256),
                 num_critics: int = 2):
        super().__init__()
        self.encoder = image_encoder(obs_shape)
        layers: list[nn.Module] = []
        width = observation_width(obs_shape, self.encoder) + act_dim
        for size in hidden:
            layers += [ParallelLinear(num_critics, width, size), nn.ReLU()]
            width = size
        layers.append(ParallelLinear(num_critics, width, 1))
        self.layers = nn.Sequential(*layers)
        self.num_critics = num_critics

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        features = as_unit_scale(obs).flatten(1) if self.encoder is None else self.encoder(obs)
        return self.layers(torch.cat([features, actions], dim=-1)).squeeze(-1).transpose(0, 1)


class SquashedGaussianActor(nn.Module):
    """SAC's policy (Haarnoja et al. 2018): ``a = tanh(u)``, ``u ~ N(mu(s), sigma(s))``, with the log-probability of
    ``a`` corrected for the tanh: ``log pi(a|s) = log N(u) - sum log(1 - tanh(u)^2)``."""

    LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0

    def __init__(self, obs_shape: int | Sequence[int], act_dim: int, hidden: Sequence[int] = (256, 256)):
        super().__init__()
        self.encoder = image_encoder(obs_shape)
        self.torso = MLP(observation_width(obs_shape, self.encoder), hidden)
        self.mean = nn.Linear(self.torso.out_features, act_dim)
        self.log_std = nn.Linear(self.torso.out_features, act_dim)

    def forward(self, obs: torch.Tensor, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Actions in [-1, 1] and their log-probabilities (B,). Deterministic: ``tanh(mu)``."""
        features = self.torso(obs if self.encoder is None else self.encoder(obs))
        mean = self.mean(features)
        # Squash the log std into its range smoothly (as CleanRL and SpinningUp do), keeping gradients alive.
        log_std = torch.tanh(self.log_std(features))
        log_std = self.LOG_STD_MIN + 0.5 * (self.LOG_STD_MAX - self.LOG_STD_MIN) * (log_std + 1)
        u = mean if deterministic else mean + log_std.exp() * torch.randn_like(mean)
        gaussian_log_prob = (-0.5 * ((u - mean) / log_std.exp()).pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        return torch.tanh(u), gaussian_log_prob - tanh_log_det(u).sum(-1)


def tanh_log_det(u: torch.Tensor) -> torch.Tensor:
    """``log(1 - tanh(u)^2)`` computed as ``2 (log 2 - u - softplus(-2u))``: exact, and finite where tanh(u)
    rounds to +-1."""
    return 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))
