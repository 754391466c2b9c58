"""Noisy linear layers with factorised Gaussian noise (Fortunato et al. 2018, "Noisy Networks for Exploration")."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn import functional as F


def _scaled_noise(size: int, device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    """``f(x) = sgn(x) sqrt(|x|)`` of standard normal draws: the paper's factorised-noise transform."""
    x = torch.randn(size, device=device, generator=generator)
    return x.sign() * x.abs().sqrt()


class NoisyLinear(nn.Module):
    """``y = (mu_w + sigma_w * eps_w) x + mu_b + sigma_b * eps_b`` with ``eps_w = f(eps_out) f(eps_in)^T``.

    Initialization as in the paper's factorised case: ``mu ~ U[-1/sqrt(p), 1/sqrt(p)]`` and ``sigma = sigma_0 /
    sqrt(p)`` for p inputs. The noise stays fixed until :meth:`reset_noise`; in evaluation mode (``.eval()`` or
    :func:`noise_off`) the layer is the plain linear map of the means.
    """

    def __init__(self, in_features: int, out_features: int, sigma_0: float = 0.5):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight_mu = nn.Parameter(torch.empty(out_features, in_features))
        self.weight_sigma = nn.Parameter(torch.full((out_features, in_features), sigma_0 / math.sqrt(in_features)))
        self.bias_mu = nn.Parameter(torch.empty(out_features))
        self.bias_sigma = nn.Parameter(torch.full((out_features,), sigma_0 / math.sqrt(in_features)))
        bound = 1.0 / math.sqrt(in_features)
        nn.init.uniform_(self.weight_mu, -bound, bound)
        nn.init.uniform_(self.bias_mu, -bound, bound)
        # Buffers, so a checkpoint resumes with the same noise sample.
        self.register_buffer("eps_in", torch.zeros(in_features))
        self.register_buffer("eps_out", torch.zeros(out_features))
        self.reset_noise()

    def reset_noise(self, generator: torch.Generator | None = None) -> None:
        """Draw new factorised noise: p + q normal samples instead of p * q."""
        self.eps_in.copy_(_scaled_noise(self.in_features, self.eps_in.device, generator))
        self.eps_out.copy_(_scaled_noise(self.out_features, self.eps_out.device, generator))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = F.linear(x, self.weight_mu, self.bias_mu)
        if not self.training:
            return mean
        # (sigma_w * eps_out eps_in^T) x = eps_out * (sigma_w (eps_in * x)): a second product of the layer's size
        # instead of building the (out, in) noisy weight, which cost several times the product on Atari's layer.
        return mean + (F.linear(x * self.eps_in, self.weight_sigma) + self.bias_sigma) * self.eps_out

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


def noisy_layers(module: nn.Module) -> list[NoisyLinear]:
    return [m for m in module.modules() if isinstance(m, NoisyLinear)]


def reset_noise(module: nn.Module, generator: torch.Generator | None = None) -> None:
    """Resample the noise of every noisy layer in ``module``."""
    for layer in noisy_layers(module):
        layer.reset_noise(generator)


@contextmanager
def noise_off(module: nn.Module) -> Iterator[None]:
    """Run ``module``'s noisy layers on their means only, leaving every other layer's mode (batch norm) as it is."""
    layers = [layer for layer in noisy_layers(module) if layer.training]
    for layer in layers:
        layer.training = False
    try:
        yield
    finally:
        for layer in layers:
            layer.training = True
