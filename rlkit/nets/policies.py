"""Policy and value heads, their action distributions, and the actor-critic network built from them."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical

from rlkit.nets.encoders import make_encoder


class DiagGaussian:
    """A Gaussian with diagonal covariance over the last axis: ``mean`` (B, A), ``log_std`` broadcastable to it."""

    def __init__(self, mean: torch.Tensor, log_std: torch.Tensor):
        self.mean = mean
        self.log_std = log_std.expand_as(mean)

    @functools.cached_property
    def std(self) -> torch.Tensor:  # once: sample() and log_prob() of one step both need it
        return self.log_std.exp()

    @property
    def mode(self) -> torch.Tensor:
        return self.mean

    def sample(self) -> torch.Tensor:
        return self.mean + self.std * torch.randn_like(self.mean)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        """Summed over action dimensions: (B,)."""
        z = (actions - self.mean) / self.std
        return (-0.5 * z.pow(2) - self.log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    def entropy(self) -> torch.Tensor:
        return (0.5 + 0.5 * math.log(2 * math.pi) + self.log_std).sum(-1)

    def kl(self, other: "DiagGaussian") -> torch.Tensor:
        """KL(self || other), (B,)."""
        var_ratio = (self.log_std - other.log_std).mul(2).exp()
        mean_term = ((self.mean - other.mean) / other.std).pow(2)
        return 0.5 * (var_ratio + mean_term - 1.0 - var_ratio.log()).sum(-1)


class MultiCategorical:
    """Independent categoricals, one per entry of a ``MultiDiscrete`` action (a ``MultiBinary`` one is entries of 2
    choices): ``logits`` (B, sum(nvec)) hold one block per entry, actions are (B, len(nvec)) choices, and
    log-probs, entropies and KLs are sums over the entries (the factorised policy of SB3 and CleanRL)."""

    def __init__(self, logits: torch.Tensor, nvec: Sequence[int]):
        self.logits, self.nvec = logits, tuple(int(n) for n in nvec)
        self.parts = [Categorical(logits=block) for block in logits.split(self.nvec, dim=-1)]

    @property
    def mode(self) -> torch.Tensor:
        return torch.stack([part.mode for part in self.parts], dim=-1)

    def sample(self) -> torch.Tensor:
        return torch.stack([part.sample() for part in self.parts], dim=-1)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        return sum(part.log_prob(choice) for part, choice in zip(self.parts, actions.unbind(-1)))

    def entropy(self) -> torch.Tensor:
        return sum(part.entropy() for part in self.parts)

    def kl(self, other: "MultiCategorical") -> torch.Tensor:
        """KL(self || other), (B,)."""
        return sum(torch.distributions.kl_divergence(p, q) for p, q in zip(self.parts, other.parts))


ActionDistribution = DiagGaussian | Categorical | MultiCategorical


def kl_divergence(p: ActionDistribution, q: ActionDistribution) -> torch.Tensor:
    """KL(p || q) per row, for any kind of action distribution."""
    if isinstance(p, (DiagGaussian, MultiCategorical)):
        return p.kl(q)
    return torch.distributions.kl_divergence(p, q)


def frozen(dist: ActionDistribution) -> ActionDistribution:
    """A copy of ``dist`` that later parameter updates leave alone (a Gaussian's state-independent log std is a
    view of the live parameter)."""
    if isinstance(dist, DiagGaussian):
        return DiagGaussian(dist.mean.detach(), dist.log_std.detach().clone())
    if isinstance(dist, MultiCategorical):
        return MultiCategorical(dist.logits.detach(), dist.nvec)
    return Categorical(logits=dist.logits.detach())


class CategoricalHead(nn.Module):
    """Features -> a categorical distribution over ``n_actions``."""

    def __init__(self, in_features: int, n_actions: int):
        super().__init__()
        self.logits = nn.Linear(in_features, n_actions)

    def forward(self, features: torch.Tensor) -> Categorical:
        return Categorical(logits=self.logits(features))

    def sample(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Actions sampled from ``forward(features)`` and their log-probs, computed as torch's Categorical
        computes them (same random draws, same numbers) but without building one: in per-step acting its
        construction and argument checks cost more than the math."""
        logits = self.logits(features)
        log_pmf = logits - logits.logsumexp(dim=-1, keepdim=True)  # Categorical.logits
        actions = torch.multinomial(torch.softmax(log_pmf, dim=-1), 1, True).squeeze(-1)  # Categorical.sample
        return actions, log_pmf.gather(-1, actions.unsqueeze(-1)).squeeze(-1)


class SampledHead(nn.Module):
    """A head whose ``forward`` gives a distribution object; ``sample`` draws from it."""

    def sample(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Actions sampled from ``forward(features)`` and their log-probs."""
        dist = self(features)
        actions = dist.sample()
        return actions, dist.log_prob(actions)


class MultiCategoricalHead(SampledHead):
    """Features -> a :class:`MultiCategorical` over entries of ``nvec`` choices each; actions (B, len(nvec))."""

    def __init__(self, in_features: int, nvec: Sequence[int]):
        super().__init__()
        self.nvec = tuple(int(n) for n in nvec)
        self.logits = nn.Linear(in_features, sum(self.nvec))

    def forward(self, features: torch.Tensor) -> MultiCategorical:
        return MultiCategorical(self.logits(features), self.nvec)


def action_choices(action_space: gym.Space) -> tuple[int, ...] | None:
    """The number of choices of each entry of a ``MultiDiscrete`` or ``MultiBinary`` action, flattened in C
    order; None for any other space."""
    if isinstance(action_space, gym.spaces.MultiDiscrete):
        return tuple(int(n) for n in action_space.nvec.flatten())
    if isinstance(action_space, gym.spaces.MultiBinary):
        return (2,) * int(np.prod(action_space.n))
    return None


class GaussianHead(SampledHead):
    """Features -> a diagonal Gaussian whose log std is a learned parameter independent of the state."""

    def __init__(self, in_features: int, action_dim: int, log_std_init: float = 0.0):
        super().__init__()
        self.mean = nn.Linear(in_features, action_dim)
        self.log_std = nn.Parameter(torch.full((action_dim,), float(log_std_init)))

    def forward(self, features: torch.Tensor) -> DiagGaussian:
        return DiagGaussian(self.mean(features), self.log_std)


class ValueHead(nn.Module):
    """Features -> V(s), shape (B,)."""

    def __init__(self, in_features: int):
        super().__init__()
        self.linear = nn.Linear(in_features, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features).squeeze(-1)


ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


def policy_head(in_features: int, action_space: gym.Space, log_std_init: float = 0.0) -> nn.Module:
    """Discrete -> :class:`CategoricalHead`, MultiDiscrete and MultiBinary -> :class:`MultiCategoricalHead`,
    Box -> :class:`GaussianHead`."""
    if isinstance(action_space, gym.spaces.Discrete):
        return CategoricalHead(in_features, int(action_space.n))
    if action_choices(action_space) is not None:
        return MultiCategoricalHead(in_features, action_choices(action_space))
    return GaussianHead(in_features, int(math.prod(action_space.shape)), log_std_init)


def orthogonal_init(net: nn.Module) -> None:
    """Orthogonal weights, zero biases; small policy outputs so the first policy is near uniform (as in the PPO
    implementations of OpenAI baselines, SB3 and CleanRL). ``net`` has a ``policy_head`` and a ``value_head``;
    recurrent layers get orthogonal weights of gain 1 (as CleanRL's ppo_atari_lstm)."""
    for module in net.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            _orthogonal(module.weight, math.sqrt(2))
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.RNNBase):
            for name, param in module.named_parameters():
                if name.startswith("weight"):
                    _orthogonal(param, 1.0)
                else:
                    nn.init.zeros_(param)
    head = net.policy_head
    _orthogonal((head.mean if isinstance(head, GaussianHead) else head.logits).weight, 0.01)
    _orthogonal(net.value_head.linear.weight, 1.0)


class ActorCritic(nn.Module):
    """A policy and a value function, sharing one torso or each with its own.

    Args:
        obs_shape: one observation; (C, H, W) stacks get the Nature CNN, vectors an MLP.
        action_space: Discrete -> categorical policy, MultiDiscrete or MultiBinary -> one categorical per
            entry, Box -> Gaussian policy.
        hidden, activation: MLP widths and activation (``tanh`` or ``relu``).
        shared: one torso for both heads (the usual choice for images) or two (the usual choice for MuJoCo).
        log_std_init: initial log std of a Gaussian policy.
    """

    def __init__(
        self,
        obs_shape: Sequence[int],
        action_space: gym.Space,
        hidden: Sequence[int] = (64, 64),
        activation: str = "tanh",
        shared: bool = False,
        log_std_init: float = 0.0,
    ):
        super().__init__()
        act = ACTIVATIONS[activation]
        self.actor_torso = make_encoder(obs_shape, hidden=hidden, activation=act)
        self.critic_torso = self.actor_torso if shared else make_encoder(obs_shape, hidden=hidden, activation=act)
        width = self.actor_torso.out_features
        self.policy_head = policy_head(width, action_space, log_std_init)
        self.value_head = ValueHead(width)
        self.shared = shared
        orthogonal_init(self)

    def actor_parameters(self) -> list[nn.Parameter]:
        return list(self.actor_torso.parameters()) + list(self.policy_head.parameters())

    def critic_parameters(self) -> list[nn.Parameter]:
        shared = {id(p) for p in self.actor_torso.parameters()} if self.shared else set()
        own = [p for p in self.critic_torso.parameters() if id(p) not in shared]
        return own + list(self.value_head.parameters())

    def distribution(self, obs: torch.Tensor) -> ActionDistribution:
        return self.policy_head(self.actor_torso(obs))

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.value_head(self.critic_torso(obs))

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sampled actions, their log-probs and V(s): what acting needs, without a distribution object."""
        features = self.actor_torso(obs)
        actions, log_probs = self.policy_head.sample(features)
        return actions, log_probs, self.value_head(features if self.shared else self.critic_torso(obs))

    def forward(self, obs: torch.Tensor) -> tuple[ActionDistribution, torch.Tensor]:
        if self.shared:
            features = self.actor_torso(obs)
            return self.policy_head(features), self.value_head(features)
        return self.distribution(obs), self.value(obs)


@torch.no_grad()
def _orthogonal(weight: torch.Tensor, gain: float) -> None:
    """Orthogonal init that keeps the weight's memory layout (``nn.init.orthogonal_`` cannot write into the
    channels-last convolutions of the Nature CNN)."""
    weight.copy_(nn.init.orthogonal_(torch.empty(weight.shape, dtype=weight.dtype), gain))


class RunningMeanStd(nn.Module):
    """Running mean and variance of a stream of batches (Chan et al.'s parallel update), kept as buffers so they
    travel in ``state_dict``. ``forward`` standardizes and clips.

    ``all_reduce``: sums a tensor over processes in place (:func:`rlkit.distributed.all_reduce_sum`); given, every
    update merges the batches of all processes, so the statistics stay equal under torchrun.
    """

    def __init__(self, shape: Sequence[int] = (), clip: float = 10.0, epsilon: float = 1e-8,
                 all_reduce: Callable[[torch.Tensor], None] | None = None):
        super().__init__()
        self.register_buffer("mean", torch.zeros(tuple(shape), dtype=torch.float64))
        self.register_buffer("var", torch.ones(tuple(shape), dtype=torch.float64))
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))
        self.clip, self.epsilon, self.all_reduce = clip, epsilon, all_reduce

    @torch.no_grad()
    def update(self, batch: torch.Tensor) -> None:
        batch = batch.to(self.mean.device, torch.float64).reshape(-1, *self.mean.shape)
        if self.all_reduce is None and batch.device.type == "cpu":
            self._update_numpy(batch.detach().numpy())
        else:
            self._update_torch(batch)

    def _update_torch(self, batch: torch.Tensor) -> None:
        """:meth:`update` in torch, for any device and across processes (``batch``: float64, rows of samples)."""
        batch_mean, batch_var, n = batch.mean(0), batch.var(0, unbiased=False), batch.shape[0]
        if self.all_reduce is not None:  # the moments of every process's batch
            moments = torch.cat([torch.tensor([float(n)], dtype=torch.float64, device=batch.device),
                                 batch.sum(0).flatten(), batch.pow(2).sum(0).flatten()])
            self.all_reduce(moments)
            n, size = moments[0], batch_mean.numel()
            batch_mean = (moments[1:1 + size] / n).view_as(batch_mean)
            batch_var = (moments[1 + size:] / n).view_as(batch_var) - batch_mean.pow(2)
        delta, total = batch_mean - self.mean, self.count + n
        self.mean += delta * n / total
        self.var.copy_((self.var * self.count + batch_var * n + delta.pow(2) * self.count * n / total) / total)
        self.count.copy_(total)

    def _update_numpy(self, batch: np.ndarray) -> None:
        """:meth:`update` on the CPU for one process, the same float64 operations in the same order, done by
        numpy on views of the buffers: acting calls this every step, where a dozen tiny torch ops cost ~50 us.
        Only correctly rounded operations (+ - * /) move to numpy: ``delta * delta`` is torch's ``pow(2)``
        (numpy's scalar ``** 2`` calls pow(), an ulp off at times). torch's sqrt is not always numpy's either, which
        is why ``forward`` stays in torch. tests/test_ppo_speed_paths.py checks this against the torch code."""
        mean, var, count = self.mean.numpy(), self.var.numpy(), self.count.numpy()
        n = batch.shape[0]
        if n == 1:  # one env: the batch's mean is x and its variance 0 (exactly, in torch too), so the terms
            delta, total = batch[0] - mean, count + 1  # with n and batch_var drop out of the same formula
            mean += delta / total
            var[...] = (var * count + delta * delta * count / total) / total
        else:  # torch's reductions, whose summation order numpy's need not share
            tensor = torch.from_numpy(batch)
            batch_mean, batch_var = tensor.mean(0).numpy(), tensor.var(0, unbiased=False).numpy()
            delta, total = batch_mean - mean, count + n
            mean += delta * n / total
            var[...] = (var * count + batch_var * n + delta * delta * count * n / total) / total
        count[...] = total

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scaled = (x - self.mean.to(x.dtype)) / torch.sqrt(self.var.to(x.dtype) + self.epsilon)
        return scaled.clamp(-self.clip, self.clip)
