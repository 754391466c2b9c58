"""Bookkeeping of finished games, written once for every RL source."""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np


class Episodes:
    """Games finished so far: their count, the last returns (for the progress bar) and those the loop has not
    logged yet. Returns are raw game scores (what :class:`rlkit.envs.EpisodeSignals` reports)."""

    def __init__(self, recent: int = 20):
        self.count = 0
        self.recent_returns: deque[float] = deque(maxlen=recent)
        self.finished: list[tuple[int, float, int]] = []  # (step, raw return, length) since the last pop

    def add(self, step: int, episode_return: float, length: int) -> None:
        self.count += 1
        self.recent_returns.append(episode_return)
        self.finished.append((step, episode_return, length))

    def record(self, step: int, info: dict[str, Any]) -> None:
        """The games that ended in one vector step, from its ``info``; ``step`` is the count after it."""
        for i in np.flatnonzero(info["episode_done"]):
            self.add(step, float(info["episode_return"][i]), int(info["episode_length"][i]))

    def pop_finished(self) -> list[tuple[int, float, int]]:
        """Games finished since the last call: (step, raw return, length)."""
        finished, self.finished = self.finished, []
        return finished

    def state_dict(self) -> dict[str, Any]:
        return {"episodes": self.count, "recent_returns": list(self.recent_returns)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count = state["episodes"]
        self.recent_returns.extend(state["recent_returns"])
