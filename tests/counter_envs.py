"""A deterministic toy env whose rewards and episode ends are known by hand, for tests of rollouts and returns."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from rlkit.envs import EpisodeSignals

COUNTER_OBS = gym.spaces.Box(0.0, 100.0, (1,), np.float32)


class Counter(gym.Env):
    """Deterministic episodes of ``length`` steps: obs = steps taken, reward = steps taken (1, 2, 3, ...); the
    episode ends by termination, or by truncation (a time limit) when ``truncate``."""

    observation_space = COUNTER_OBS
    action_space = gym.spaces.Discrete(2)

    def __init__(self, length: int, truncate: bool):
        self.length, self.truncate, self.t = length, truncate, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.t += 1
        end = self.t == self.length
        return np.array([self.t], np.float32), float(self.t), end and not self.truncate, end and self.truncate, {}


def counter_env() -> EpisodeSignals:
    """Two sub-envs: 0 has 3-step episodes that terminate, 1 has 4-step episodes cut by a time limit."""
    vec = gym.vector.SyncVectorEnv([lambda: Counter(3, False), lambda: Counter(4, True)],
                                   autoreset_mode=AutoresetMode.SAME_STEP)
    return EpisodeSignals(vec)
