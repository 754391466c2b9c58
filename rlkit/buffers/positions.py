"""Replay of self-play positions: (board planes, visit distribution, outcome), the newest ``capacity`` kept.

Board planes are 0/1 (a cell holds a piece or not, a player's index), so they are stored as bytes: a quarter of the
memory, and of the checkpoint, which holds the replay."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch


class PositionBatch(NamedTuple):
    """A minibatch of positions on the learner's device."""

    obs: torch.Tensor
    """(B, C, H, W) the net's input (:func:`rlkit.planning.encode`)."""
    policy: torch.Tensor
    """(B, num_actions) the search's visit distribution pi at the position."""
    outcome: torch.Tensor
    """(B,) the game's final outcome z for the player to move there: 1 win, 0 draw, -1 loss."""
    arena: dict[str, float]
    """Metrics of an arena the source played just before this batch (empty otherwise), for the loop's log."""


class PositionReplay:
    """A ring of positions, preallocated; ``sample`` draws uniformly (with replacement) from those stored."""

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], num_actions: int, device: torch.device,
                 seed: int | None = None):
        self.obs = np.zeros((capacity, *obs_shape), dtype=np.uint8)
        self.policy = np.zeros((capacity, num_actions), dtype=np.float32)
        self.outcome = np.zeros(capacity, dtype=np.float32)
        self.capacity, self.device = capacity, device
        self.cursor = self.size = 0
        self.added = 0
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.size

    def add(self, obs: np.ndarray, policy: np.ndarray, outcome: float) -> None:
        """Store one position; ``obs`` must hold small whole numbers (0 and 1 for the board games here)."""
        if not np.array_equal(obs, obs.astype(np.uint8)):
            raise ValueError("board planes must be whole numbers in 0..255 to be stored as bytes")
        i = self.cursor
        self.obs[i], self.policy[i], self.outcome[i] = obs, policy, outcome
        self.cursor = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)
        self.added += 1

    def sample(self, batch_size: int, arena: dict[str, float] | None = None) -> PositionBatch:
        index = self.rng.integers(self.size, size=batch_size)

        def tensor(array: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(array[index]).to(self.device)

        return PositionBatch(tensor(self.obs).float(), tensor(self.policy), tensor(self.outcome), dict(arena or {}))

    def state_dict(self) -> dict[str, Any]:
        """The stored positions (in ring order) and the sampler's state: small for board games, so a resumed run
        continues with the same replay."""
        return {"obs": torch.from_numpy(self.obs[:self.size].copy()), "policy": torch.from_numpy(
            self.policy[:self.size].copy()), "outcome": torch.from_numpy(self.outcome[:self.size].copy()),
            "cursor": self.cursor, "added": self.added, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        size = len(state["outcome"])
        if size > self.capacity or not 0 <= state["cursor"] < self.capacity:
            raise ValueError(f"a replay of {size} positions (cursor {state['cursor']}) does not fit a capacity of "
                             f"{self.capacity}")
        self.obs[:size], self.policy[:size] = state["obs"].numpy(), state["policy"].numpy()
        self.outcome[:size] = state["outcome"].numpy()
        self.size, self.cursor, self.added = size, state["cursor"], state["added"]
        self.rng.bit_generator.state = state["rng"]
