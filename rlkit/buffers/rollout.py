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
    episode_starts: torch.Tensor | None = None
    """Recurrent policies: 1 where a row's step begins an episode (the memory entering it is zeroed)."""
    memory: torch.Tensor | None = None
    """Recurrent policies: ``(parts, layers, S, hidden)``, the memory before the first step of each of ``S``
    sequences; the rows are then time-major over the sequences (row ``t * S + s``)."""

    def rows(self, index: torch.Tensor, memory: torch.Tensor | None = None) -> "RolloutBatch":
        """The rows ``index`` of every per-row field (and ``memory`` for them, when recurrent)."""
        return RolloutBatch(*(field[index] for field in self[:7]),
                            None if self.episode_starts is None else self.episode_starts[index], memory)


@dataclass(frozen=True)
class RolloutSpec:
    """The rollout storage an agent asks for; the source builds it for its number of envs."""

    num_steps: int
    obs_shape: tuple[int, ...]
    action_shape: tuple[int, ...]
    obs_dtype: torch.dtype
    action_dtype: torch.dtype
    device: torch.device
    memory_shape: tuple[int, ...] = ()
    """A recurrent policy's memory of one sub-env, ``(parts, layers, hidden)``; () for a feed-forward one."""
    sequence_length: int = 0
    """Steps per training sequence; 0: :func:`auto_sequence_length`."""
    min_sequences: int = 1
    """The sequences the learner needs at least (one per minibatch), for the automatic length."""

    def build(self, num_envs: int) -> "RolloutBuffer":
        length = self.sequence_length or auto_sequence_length(self.num_steps, num_envs, self.min_sequences)
        return RolloutBuffer(self.num_steps, num_envs, self.obs_shape, self.action_shape, self.obs_dtype,
                             self.action_dtype, self.device, self.memory_shape, length if self.memory_shape else 0)


def auto_sequence_length(num_steps: int, num_envs: int, min_sequences: int) -> int:
    """The longest length that divides ``num_steps`` and still cuts the ``num_steps x num_envs`` rollout into at
    least ``min_sequences`` sequences (the whole rollout of each sub-env when there are enough sub-envs)."""
    windows = -(-min_sequences // num_envs)  # ceil: windows per sub-env
    longest = max(1, num_steps // windows)
    return max(length for length in range(1, longest + 1) if num_steps % length == 0)


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
        memory_shape: tuple[int, ...] = (),
        sequence_length: int = 0,
    ):
        """``memory_shape`` (parts, layers, hidden) and ``sequence_length`` (dividing ``num_steps``): a recurrent
        policy's; its memory is stored before the first step of every sequence, and the episode starts of every
        step."""
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
        self.sequence_length = sequence_length
        self.memory: torch.Tensor | None = None
        if memory_shape:
            if sequence_length < 1 or num_steps % sequence_length:
                raise ValueError(f"sequence_length {sequence_length} must divide num_steps {num_steps}")
            parts, layers, hidden = memory_shape
            self.memory = zeros(num_steps // sequence_length, parts, layers, num_envs, hidden)
            self.episode_starts = zeros(*tn)
        self.step = 0

    def add(self, obs, actions, log_probs, values, rewards, terminated, truncated, final_values=None,
            memory=None, episode_starts=None) -> None:
        """Store one vector step (each argument has a leading ``num_envs`` axis). ``rewards``, ``terminated``
        and ``truncated`` reach :attr:`rewards`, :attr:`terminated` and :attr:`truncated` in :meth:`finish`.
        A recurrent policy's ``memory`` (before this step) and ``episode_starts`` are kept when the buffer has
        room for them."""
        t = self.step
        if self.memory is not None:
            self.episode_starts[t] = torch.as_tensor(episode_starts, device=self.device)
            if t % self.sequence_length == 0:
                self.memory[t // self.sequence_length] = memory
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
        """The whole rollout as one batch of T*N rows (time-major); a recurrent policy's as its sequences, the
        rows time-major over them (row ``t * S + s``, sequence ``s = w * N + n`` the ``w``-th window of sub-env
        ``n``)."""
        n = self.num_steps * self.num_envs
        if self.memory is not None:
            windows, length = self.memory.shape[0], self.sequence_length

            def sequences(x: torch.Tensor) -> torch.Tensor:
                x = x.view(windows, length, self.num_envs, *x.shape[2:]).transpose(0, 1)
                return x.reshape(n, *x.shape[3:])

            fields = (self.obs, self.actions, self.log_probs, self.values, self.advantages, self.returns,
                      self.weights, self.episode_starts)
            memory = self.memory.permute(1, 2, 0, 3, 4).flatten(2, 3)  # (parts, layers, windows * envs, hidden)
            return RolloutBatch(*(sequences(field) for field in fields), memory)
        return RolloutBatch(
            self.obs.reshape(n, *self.obs.shape[2:]), self.actions.reshape(n, *self.actions.shape[2:]),
            self.log_probs.reshape(n), self.values.reshape(n), self.advantages.reshape(n),
            self.returns.reshape(n), self.weights.reshape(n),
        )


def minibatches(batch: RolloutBatch, minibatch_size: int, generator: torch.Generator | None = None) -> Iterator[RolloutBatch]:
    """Shuffled minibatches of ``minibatch_size`` rows covering ``batch`` once. A recurrent policy's batch is cut
    into whole sequences instead (about ``minibatch_size`` rows each, at least one sequence), each kept in time
    order with its stored memory: rows are never shuffled across time."""
    if batch.memory is not None:
        yield from sequence_minibatches(batch, minibatch_size, generator)
        return
    n = batch.obs.shape[0]
    order = torch.randperm(n, generator=generator, device="cpu").to(batch.obs.device)
    for start in range(0, n, minibatch_size):
        index = order[start:start + minibatch_size]
        yield RolloutBatch(*(field[index] for field in batch[:7]))


def sequence_minibatches(batch: RolloutBatch, minibatch_size: int, generator: torch.Generator | None = None
                         ) -> Iterator[RolloutBatch]:
    """Shuffled sets of whole sequences of a recurrent batch (:meth:`RolloutBuffer.flat`), each a batch of the same
    layout: rows time-major over its sequences, their memory beside them."""
    sequences = batch.memory.shape[2]
    length = batch.obs.shape[0] // sequences
    per_minibatch = max(1, minibatch_size // length)
    order = torch.randperm(sequences, generator=generator, device="cpu").to(batch.obs.device)
    steps = torch.arange(length, device=batch.obs.device)
    for start in range(0, sequences, per_minibatch):
        chosen = order[start:start + per_minibatch]
        yield batch.rows((steps[:, None] * sequences + chosen[None, :]).reshape(-1), batch.memory[:, :, chosen])
