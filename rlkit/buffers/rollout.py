"""On-policy storage: a preallocated (steps x envs) rollout, GAE, and minibatches over the flattened rollout."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    last_values: torch.Tensor,
    gamma: float,
    lam: float,
    final_values: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation (Schulman et al. 2016) over a (T, N) rollout.

    ``delta_t = r_t + gamma * V(s_{t+1}) - V(s_t)`` and ``A_t = delta_t + gamma * lam * A_{t+1}``, where the
    recursion stops at every episode end. The next value is 0 after a termination (the game is over), the value of
    the true last observation after a truncation (a time limit cut a game that goes on: ``final_values``, 0 where
    not given), ``values[t + 1]`` otherwise and ``last_values`` after the last step.

    Args:
        rewards, values, terminated, truncated: (T, N); the flags as 0/1 floats or bools.
        last_values: (N,) values of the observations after the rollout.
        final_values: (T, N) values of the final observations at truncated steps (ignored elsewhere).

    Returns:
        advantages (T, N) and returns = advantages + values (the critic's regression target).
    """
    terminated, truncated = terminated.float(), truncated.float()
    next_values = torch.cat([values[1:], last_values[None]], dim=0)
    if final_values is None:  # never values[t + 1] after a truncation: that is the next episode's first obs
        final_values = torch.zeros_like(values)
    next_values = torch.where(truncated.bool(), final_values, next_values)
    next_values = next_values * (1.0 - terminated)
    episode_goes_on = 1.0 - torch.maximum(terminated, truncated)
    deltas = rewards + gamma * next_values - values
    discounts = gamma * lam * episode_goes_on  # all at once: the loop below is the only sequential part
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(last_values)
    for t in reversed(range(rewards.shape[0])):
        running = deltas[t] + discounts[t] * running
        advantages[t] = running
    return advantages, advantages + values


class RolloutBatch(NamedTuple):
    """A minibatch of a finished rollout (flattened over steps and envs)."""

    obs: torch.Tensor
    actions: torch.Tensor
    log_probs: torch.Tensor
    """log pi_old(a|s) at collection time."""
    values: torch.Tensor
    """V_old(s) at collection time."""
    advantages: torch.Tensor
    returns: torch.Tensor
    weights: torch.Tensor
    """1 for steps that count in the loss (REINFORCE masks unfinished episodes), else 0."""


@dataclass(frozen=True)
class RolloutSpec:
    """The rollout storage an agent asks for; the source builds it for its number of envs."""

    num_steps: int
    obs_shape: tuple[int, ...]
    action_shape: tuple[int, ...]
    obs_dtype: torch.dtype
    action_dtype: torch.dtype
    device: torch.device

    def build(self, num_envs: int) -> "RolloutBuffer":
        return RolloutBuffer(self.num_steps, num_envs, self.obs_shape, self.action_shape, self.obs_dtype,
                             self.action_dtype, self.device)


class RolloutBuffer:
    """(T steps x N envs) of on-policy experience, preallocated on the learner's device."""

    def __init__(
        self,
        num_steps: int,
        num_envs: int,
        obs_shape: tuple[int, ...],
        action_shape: tuple[int, ...],
        obs_dtype: torch.dtype = torch.float32,
        action_dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ):
        self.num_steps, self.num_envs = num_steps, num_envs
        self.device = torch.device(device)
        tn = (num_steps, num_envs)

        def zeros(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.zeros(shape, dtype=dtype, device=self.device)

        self.obs = zeros(*tn, *obs_shape, dtype=obs_dtype)
        self.actions = zeros(*tn, *action_shape, dtype=action_dtype)
        self.log_probs, self.values, self.rewards = zeros(*tn), zeros(*tn), zeros(*tn)
        self.terminated, self.truncated, self.final_values = zeros(*tn), zeros(*tn), zeros(*tn)
        self.advantages, self.returns, self.weights = zeros(*tn), zeros(*tn), torch.ones(tn, device=self.device)
        # What the env gives (numpy rewards and flags) is gathered here and moved to the device once, in
        # finish(): a tensor conversion per field and step costs more than the step's whole write.
        self._env_rows = np.zeros((3, *tn), dtype=np.float32)  # rewards, terminated, truncated
        self.step = 0

    def add(self, obs, actions, log_probs, values, rewards, terminated, truncated, final_values=None) -> None:
        """Store one vector step (each argument has a leading ``num_envs`` axis). ``rewards``, ``terminated``
        and ``truncated`` reach :attr:`rewards`, :attr:`terminated` and :attr:`truncated` in :meth:`finish`."""
        t = self.step
        self.obs[t] = torch.as_tensor(obs, device=self.device)
        self.actions[t] = torch.as_tensor(actions, device=self.device)
        self.log_probs[t], self.values[t] = log_probs, values
        env_rows = self._env_rows[:, t]
        env_rows[0], env_rows[1], env_rows[2] = rewards, terminated, truncated  # cast to float32 as torch did
        self.final_values[t] = 0.0 if final_values is None else final_values
        self.step += 1

    @property
    def full(self) -> bool:
        return self.step == self.num_steps

    def finish(self, last_values: torch.Tensor, gamma: float, lam: float, mask_unfinished: bool = False) -> None:
        """Compute advantages and returns; the rollout is then ready for :meth:`flat` and :func:`minibatches`.

        ``mask_unfinished`` gives weight 0 to the steps after each sub-env's last episode end (Monte Carlo
        methods cannot use them yet).
        """
        env_rows = torch.from_numpy(self._env_rows).to(self.device)
        for field, rows in zip((self.rewards, self.terminated, self.truncated), env_rows):
            field.copy_(rows)
        self.advantages, self.returns = gae(self.rewards, self.values, self.terminated, self.truncated,
                                            last_values, gamma, lam, self.final_values)
        if mask_unfinished:
            ended = torch.maximum(self.terminated, self.truncated)
            # A step counts if an episode end follows it (or is it) in this rollout: a reverse running maximum.
            self.weights = ended.flip(0).cummax(0).values.flip(0)

    def reset(self) -> None:
        self.step = 0
        self.weights.fill_(1.0)

    def flat(self) -> RolloutBatch:
        """The whole rollout as one batch of T*N rows (time-major)."""
        n = self.num_steps * self.num_envs
        return RolloutBatch(
            self.obs.reshape(n, *self.obs.shape[2:]), self.actions.reshape(n, *self.actions.shape[2:]),
            self.log_probs.reshape(n), self.values.reshape(n), self.advantages.reshape(n),
            self.returns.reshape(n), self.weights.reshape(n),
        )


def minibatches(batch: RolloutBatch, minibatch_size: int, generator: torch.Generator | None = None) -> Iterator[RolloutBatch]:
    """Shuffled minibatches of ``minibatch_size`` rows covering ``batch`` once."""
    n = batch.obs.shape[0]
    order = torch.randperm(n, generator=generator, device="cpu").to(batch.obs.device)
    for start in range(0, n, minibatch_size):
        index = order[start:start + minibatch_size]
        yield RolloutBatch(*(field[index] for field in batch))
