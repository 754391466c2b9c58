"""Experience replay that stores each frame once, with optional n-step returns, priorities and bootstrap masks.

Layout: one ring of *slots* per sub-environment. Slot ``s`` holds the newest frame of an observation and, once the
step from it is known, the action, reward and flags of the transition that starts there. The next observation of
slot ``s`` is slot ``s + 1``, and an observation stack is rebuilt from slots ``s - k + 1 .. s``.

When an observation does not continue the last stored one (the first step of a new game), it starts a new
sequence: if its older frames are all zero (the padding ale-py and rlkit's gymnasium wrappers use) only its newest
frame is stored and the slot is marked as a sequence start, so frames before it rebuild as zeros; otherwise its
whole stack goes in as ``k`` slots. Either way a rebuilt stack is exactly what the env returned and never mixes
two games. The true last observation of a finished game gets its own slot, so a time-limit truncation can
bootstrap from it. A slot stops being valid as soon as a write destroys its frame or its history.

For Atari (k = 4, 84x84 frames) that is 7,056 bytes of pixels plus 9 bytes of action, reward and flags per slot;
SB3 stores both the stack and the next stack (56,448 bytes).
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from rlkit.buffers.sum_tree import SumTree
from rlkit.errors import UserError


class Batch(NamedTuple):
    """A sampled minibatch, as tensors on the learner's device. ``B`` is the batch size."""

    obs: torch.Tensor
    """(B, *obs_shape), the stored dtype (uint8 for Atari)."""
    actions: torch.Tensor
    """(B,) int64 for discrete actions, (B, *action_shape) float32 otherwise."""
    rewards: torch.Tensor
    """(B,) float32: the n-step discounted sum of rewards (the plain reward for n = 1)."""
    next_obs: torch.Tensor
    """(B, *obs_shape): the observation to bootstrap from, ``m <= n`` steps later."""
    terminated: torch.Tensor
    """(B,) float32: 1 where the game truly ended within those ``m`` steps (no bootstrap)."""
    discounts: torch.Tensor
    """(B,) float32: ``gamma ** m``, the discount of the bootstrap term."""
    weights: torch.Tensor
    """(B,) float32: importance-sampling weights (ones without prioritized replay)."""
    masks: torch.Tensor
    """(B, K) float32: 1 where head k may learn from the row (bootstrap masks of K heads); ones (B, 1) without
    bootstrap heads, so a single Q head learns from every row."""
    update_priorities: Callable[[np.ndarray | torch.Tensor], None] | None
    """With prioritized replay: call with the new |TD errors| of this batch; None otherwise."""


@dataclass(frozen=True)
class ReplaySpec:
    """The replay an agent asks for; the source builds it, adding how many envs feed it, the frame stack, the
    device and the seed. Fields as in :class:`ReplayBuffer`."""

    capacity: int
    obs_shape: tuple[int, ...]
    obs_dtype: Any
    action_shape: tuple[int, ...]
    action_dtype: Any
    n_step: int = 1
    gamma: float = 0.99
    prioritized: bool = False
    alpha: float = 0.6
    beta: float = 0.4
    beta_steps: int = 0
    bootstrap_heads: int = 0
    bootstrap_prob: float = 0.5

    def build(self, num_envs: int, frame_stack: int, device: torch.device | str,
              seed: int | None) -> "ReplayBuffer":
        return ReplayBuffer(**dataclasses.asdict(self), num_envs=num_envs, frame_stack=frame_stack, device=device,
                            seed=seed)


class ReplayBuffer:
    """Preallocated replay memory for one or more sub-environments.

    Args:
        capacity: transitions kept in total (split evenly over ``num_envs`` rings).
        obs_shape, obs_dtype: one observation, e.g. ``(4, 84, 84)`` uint8 or ``(4,)`` float32.
        action_shape, action_dtype: one action as stored, ``()`` uint8 for a small discrete space.
        num_envs: sub-environments feeding the buffer (one ring each).
        frame_stack: ``k`` > 1 when ``obs_shape[0]`` stacks the last ``k`` frames: store each frame once.
        n_step, gamma: return horizon and discount used when sampling.
        prioritized, alpha, beta, beta_steps, priority_eps: prioritized replay (Schaul et al. 2016):
            ``P(i) ~ p_i^alpha``; weights ``(N P(i))^-beta`` normalized by the batch maximum; ``beta`` grows
            linearly to 1 over ``beta_steps`` added transitions.
        bootstrap_heads, bootstrap_prob: store a Bernoulli(``bootstrap_prob``) mask per head and transition
            (Osband et al. 2016).
        device: where sampled tensors go.
        seed: seeds sampling and masks.
    """

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        obs_dtype: np.dtype | type = np.float32,
        action_shape: tuple[int, ...] = (),
        action_dtype: np.dtype | type = np.int64,
        *,
        num_envs: int = 1,
        frame_stack: int = 1,
        n_step: int = 1,
        gamma: float = 0.99,
        prioritized: bool = False,
        alpha: float = 0.6,
        beta: float = 0.4,
        beta_steps: int = 0,
        priority_eps: float = 1e-6,
        bootstrap_heads: int = 0,
        bootstrap_prob: float = 0.5,
        device: torch.device | str = "cpu",
        seed: int | None = None,
    ):
        if frame_stack > 1 and obs_shape[0] != frame_stack:
            raise ValueError(f"frame_stack={frame_stack} needs obs_shape[0] == {frame_stack}, got {obs_shape}")
        self.num_envs = num_envs
        self.slots = capacity // num_envs
        if self.slots < frame_stack + n_step + 1:
            raise ValueError(f"capacity {capacity} is too small for {num_envs} envs")
        self.obs_shape = tuple(obs_shape)
        self.frame_stack = frame_stack
        self.n_step, self.gamma = n_step, gamma
        self.prioritized, self.alpha, self.beta0, self.beta_steps = prioritized, alpha, beta, beta_steps
        self.priority_eps = priority_eps
        self.bootstrap_heads, self.bootstrap_prob = bootstrap_heads, bootstrap_prob
        self.device = torch.device(device)
        self.rng = np.random.default_rng(seed)
        self.lock = threading.Lock()  # --overlap: an env thread adds while the update writes priorities

        frame_shape = self.obs_shape[1:] if frame_stack > 1 else self.obs_shape
        shape = (num_envs, self.slots)
        self.frames = np.zeros(shape + frame_shape, dtype=obs_dtype)
        self.actions = np.zeros(shape + tuple(action_shape), dtype=action_dtype)
        self.rewards = np.zeros(shape, dtype=np.float32)
        self.terminated = np.zeros(shape, dtype=bool)
        self.truncated = np.zeros(shape, dtype=bool)
        self.valid = np.zeros(shape, dtype=bool)  # a transition starts here and its frames are intact
        self.seq_start = np.zeros(shape, dtype=bool)  # frames before this slot are not part of its stack
        self.masks = np.zeros(shape + (bootstrap_heads,), dtype=bool) if bootstrap_heads else None
        self.tree = SumTree(num_envs * self.slots) if prioritized else None
        self.max_priority = 1.0

        self.cursor = np.zeros(num_envs, dtype=np.int64)  # next slot to write, per ring
        self.filled = np.zeros(num_envs, dtype=np.int64)  # slots written at least once, per ring
        self.num_valid = 0
        self.added = 0  # transitions added since creation (drives the beta schedule)
        self._last_next: list[np.ndarray | None] = [None] * num_envs  # continuity check for the next add

    # ------------------------------------------------------------------ sizes
    def __len__(self) -> int:
        """Number of transitions that can be sampled now."""
        return self.num_valid

    @property
    def nbytes(self) -> int:
        """Bytes held by the preallocated storage (every array that grows with capacity)."""
        arrays = [self.frames, self.actions, self.rewards, self.terminated, self.truncated, self.valid, self.seq_start]
        arrays += [self.masks] if self.masks is not None else []
        arrays += [self.tree.nodes] if self.tree is not None else []
        return sum(a.nbytes for a in arrays)

    @property
    def beta(self) -> float:
        if self.beta_steps <= 0:
            return self.beta0
        return min(1.0, self.beta0 + (1.0 - self.beta0) * self.added / self.beta_steps)

    # ------------------------------------------------------------------ writing
    def add(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        next_obs: np.ndarray,
        rings: np.ndarray | None = None,
    ) -> None:
        """Add one step of every sub-env (arrays with a leading ``num_envs`` axis), or of the sub-envs whose rings
        ``rings`` lists (arrays with a leading ``len(rings)`` axis: remote actors each feed their own rings).

        ``next_obs`` is the true next observation (the last one of a finished game, not the reset one).
        """
        rings = range(self.num_envs) if rings is None else rings
        with self.lock:
            self._add(rings, obs, actions, rewards, terminated, truncated, next_obs)

    def _add(self, rings, obs, actions, rewards, terminated, truncated, next_obs) -> None:
        for i, e in enumerate(rings):
            last = self._last_next[e]
            if last is None or not np.array_equal(last, obs[i]):
                self._push_stack(e, obs[i])
            s = (self.cursor[e] - 1) % self.slots  # the slot now holding obs[i]
            self.actions[e, s] = actions[i]
            self.rewards[e, s] = rewards[i]
            self.terminated[e, s] = terminated[i]
            self.truncated[e, s] = truncated[i]
            if self.masks is not None:
                self.masks[e, s] = self.rng.random(self.bootstrap_heads) < self.bootstrap_prob
            self._push_frame(e, next_obs[i][-1] if self.frame_stack > 1 else next_obs[i])
            self.valid[e, s] = True
            self.num_valid += 1
            if self.tree is not None:
                self.tree.set(e * self.slots + s, self.max_priority**self.alpha)
            self._last_next[e] = np.array(next_obs[i], copy=True)
        self.added += len(rings)

    def _push_stack(self, e: int, obs: np.ndarray) -> None:
        """Start a new sequence with ``obs``: zero history is implied by a start mark, any other is stored."""
        if self.frame_stack == 1 or not obs[:-1].any():
            self._push_frame(e, obs[-1] if self.frame_stack > 1 else obs, seq_start=True)
        else:
            for frame in obs:
                self._push_frame(e, frame)

    def _push_frame(self, e: int, frame: np.ndarray, seq_start: bool = False) -> None:
        c = self.cursor[e]
        self.frames[e, c] = frame
        self.seq_start[e, c] = seq_start
        # Slot c loses its old transition; slots c+1..c+k-1 lose the history their stacks are rebuilt from.
        broken = (c + np.arange(self.frame_stack)) % self.slots
        self.num_valid -= int(np.count_nonzero(self.valid[e, broken]))
        self.valid[e, broken] = False
        if self.tree is not None:
            self.tree.set(e * self.slots + broken, 0.0)
        self.cursor[e] = (c + 1) % self.slots
        self.filled[e] = min(self.filled[e] + 1, self.slots)

    # ------------------------------------------------------------------ reading
    def _stack(self, env: np.ndarray, slot: np.ndarray) -> np.ndarray:
        """Observations whose newest frame is at (env, slot), shape (B, *obs_shape)."""
        if self.frame_stack == 1:
            return self.frames[env, slot]
        slots = (slot[:, None] + np.arange(1 - self.frame_stack, 1)) % self.slots  # oldest .. newest
        frames = self.frames[env[:, None], slots]
        starts = self.seq_start[env[:, None], slots]
        # A frame older than a sequence start in the same stack is padding: zero.
        starts_after = np.cumsum(starts[:, ::-1], axis=1)[:, ::-1] - starts
        frames[starts_after > 0] = 0
        return frames

    def _sample_uniform(self, batch_size: int) -> np.ndarray:
        flat = np.empty(batch_size, dtype=np.int64)
        todo = np.arange(batch_size)
        while len(todo):  # rejection sampling: invalid slots are a handful per episode
            env = self.rng.integers(0, self.num_envs, len(todo))
            slot = (self.rng.random(len(todo)) * self.filled[env]).astype(np.int64)
            flat[todo] = env * self.slots + slot
            todo = todo[~self.valid.reshape(-1)[flat[todo]]]
        return flat

    def sample(self, batch_size: int) -> Batch:
        """Sample a minibatch (uniformly, or by priority)."""
        if self.num_valid == 0:
            raise RuntimeError("the replay buffer holds no complete transition yet")
        if self.tree is None:
            flat = self._sample_uniform(batch_size)
            weights = np.ones(batch_size, dtype=np.float32)
        else:
            total = self.tree.total
            targets = (np.arange(batch_size) + self.rng.random(batch_size)) * (total / batch_size)
            flat = self.tree.find(np.minimum(targets, np.nextafter(total, 0)))
            probs = self.tree[flat] / total
            weights = (self.num_valid * probs) ** (-self.beta)
            weights = (weights / weights.max()).astype(np.float32)
        env, slot = np.divmod(flat, self.slots)
        rewards, terminated, steps = self._n_step(env, slot)
        next_slot = (slot + steps) % self.slots

        def tensor(x: np.ndarray, dtype: torch.dtype | None = None) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(x)).to(self.device, dtype, non_blocking=True)

        actions = self.actions[env, slot]
        return Batch(
            obs=tensor(self._stack(env, slot)),
            actions=tensor(actions, torch.int64 if actions.dtype.kind in "iu" else torch.float32),
            rewards=tensor(rewards),
            next_obs=tensor(self._stack(env, next_slot)),
            terminated=tensor(terminated, torch.float32),
            discounts=tensor((self.gamma**steps).astype(np.float32)),
            weights=tensor(weights),
            masks=(tensor(self.masks[env, slot], torch.float32) if self.masks is not None
                   else torch.ones(len(slot), 1, device=self.device)),
            update_priorities=partial(self.update_priorities, flat) if self.tree is not None else None,
        )

    def _n_step(self, env: np.ndarray, slot: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Discounted reward sums over up to ``n`` steps, stopping at the end of a game or at the newest data.

        Returns (rewards, terminated, steps m).
        """
        if self.n_step == 1:
            return self.rewards[env, slot], self.terminated[env, slot], np.ones(len(slot), dtype=np.int64)
        slots = (slot[:, None] + np.arange(self.n_step)) % self.slots  # (B, n)
        e = env[:, None]
        # Step i is included if slot s+i starts a stored transition and no earlier included step ended the game.
        ended = self.terminated[e, slots] | self.truncated[e, slots]
        ended_before = np.concatenate([np.zeros_like(ended[:, :1]), np.cumsum(ended, axis=1)[:, :-1] > 0], axis=1)
        included = np.cumprod(self.valid[e, slots] & ~ended_before, axis=1).astype(bool)
        steps = included.sum(axis=1)
        discounts = self.gamma ** np.arange(self.n_step)
        rewards = (self.rewards[e, slots] * discounts * included).sum(axis=1).astype(np.float32)
        last = slots[np.arange(len(slot)), steps - 1]
        return rewards, self.terminated[env, last], steps

    def update_priorities(self, flat_indices: np.ndarray, td_errors: np.ndarray | torch.Tensor) -> None:
        """Set priorities ``|td| + eps`` for sampled transitions that are still stored."""
        if isinstance(td_errors, torch.Tensor):
            td_errors = td_errors.detach().abs().cpu().numpy()
        priorities = np.abs(np.asarray(td_errors, dtype=np.float64)) + self.priority_eps
        with self.lock:
            keep = self.valid.reshape(-1)[flat_indices]
            self.max_priority = max(self.max_priority, float(priorities.max()))
            self.tree.set(flat_indices[keep], priorities[keep] ** self.alpha)

    # ------------------------------------------------------------------ saving
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue, as numpy arrays and plain values (no pickled objects)."""
        state: dict[str, Any] = {
            "frames": self.frames, "actions": self.actions, "rewards": self.rewards,
            "terminated": self.terminated, "truncated": self.truncated, "valid": self.valid,
            "seq_start": self.seq_start,
            "cursor": self.cursor, "filled": self.filled,
            "scalars": np.array([self.num_valid, self.added], dtype=np.int64),
            "max_priority": np.array(self.max_priority),
            "has_last": np.array([x is not None for x in self._last_next]),
            "last_next": np.stack([x if x is not None else np.zeros(self.obs_shape, self.frames.dtype)
                                   for x in self._last_next]),
        }
        if self.masks is not None:
            state["masks"] = self.masks
        if self.tree is not None:
            state["tree"] = self.tree.nodes
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in ("frames", "actions", "rewards", "terminated", "truncated", "valid", "seq_start", "cursor", "filled"):
            target = getattr(self, name)
            if target.shape != state[name].shape:
                raise ValueError(f"saved replay '{name}' has shape {state[name].shape}, expected {target.shape}")
            target[...] = state[name]
        if self.masks is not None:
            self.masks[...] = state["masks"]
        if self.tree is not None:
            self.tree.nodes[...] = state["tree"]
        self.num_valid, self.added = (int(x) for x in state["scalars"])
        self.max_priority = float(state["max_priority"])
        self._last_next = [np.array(x) if has else None for x, has in zip(state["last_next"], state["has_last"])]

    def save(self, path: str) -> None:
        """Write the contents to ``path`` (.npz, uncompressed, no pickles), atomically: a failed write (a full
        disk) leaves the old file and removes its temporary one."""
        tmp = f"{path}.tmp.npz"  # one fixed name: a killed write leaves one file, overwritten by the next
        try:
            with open(tmp, "wb") as f:
                np.savez(f, **self.state_dict())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load(self, path: str) -> None:
        """Restore what :meth:`save` wrote; anything else (damaged, foreign, holding pickles) is a one-line error."""
        try:
            with np.load(path, allow_pickle=False) as data:
                rings = data["cursor"].shape if "cursor" in data.files else None
                if rings is not None and rings != (self.num_envs,):
                    raise UserError(f"{path} holds replay of {rings[0]} sub-envs and this run feeds {self.num_envs} "
                                    "(actors x --num-envs under torchrun): resume with the run's processes and "
                                    "--num-envs, or delete it (replay then refills before updates resume)")
                self.load_state_dict({key: data[key] for key in data.files})
        except UserError:
            raise
        except Exception as error:  # np.load raises many kinds on foreign bytes; allow_pickle=False runs none
            raise UserError(f"{path} is damaged or not a replay file written by rlkit ({type(error).__name__}): "
                            f"delete it to resume without it (replay then refills before updates resume)") from None
