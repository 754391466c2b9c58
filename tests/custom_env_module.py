"""A user's own env module, as ``--env custom_env_module:Tiny-v0`` imports it: importing it registers the envs.

``Tiny-v0``: games of exactly ``length`` steps whatever the actions (reward 1 per step for action 1); every instance
records the keyword arguments it was built with in :data:`CREATED`, so tests see what reached the env. It renders
small RGB frames whose red channel is the step count. ``TinyDict-v0``: the same game with Dict observations.
``TinyBroken-v0``: Tiny returning a NaN reward or observation once. ``TinyShifted-v0``: Tiny with actions
``Discrete(3, start=-1)``; ``TinyMulti-v0`` and ``TinyBits-v0``: with ``MultiDiscrete`` and ``MultiBinary``
actions. ``TinyPixels-v0``: a continuous-action game seen as channels-last uint8 frames (the layout of CarRacing);
``TinyGrid-v0``: a discrete one seen as 7x7 frames.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

CREATED: list[dict[str, Any]] = []
"""The keyword arguments of every Tiny env built in this process, in order."""


class Tiny(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, length: int = 5, bonus: float = 0.0, label: str = "", render_mode: str | None = None):
        CREATED.append({"length": length, "bonus": bonus, "label": label})
        self.length, self.bonus, self.render_mode = length, bonus, render_mode
        self.observation_space = gym.spaces.Box(0.0, 100.0, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.t = 0

    def _obs(self) -> np.ndarray:
        return np.array([self.t, self.bonus], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        reward = float(action) + self.bonus
        return self._obs(), reward, self.t >= self.length, False, {}

    def render(self) -> np.ndarray:
        frame = np.zeros((12, 18, 3), np.uint8)
        frame[..., 0] = min(255, 20 * self.t)
        return frame


class TinyDict(Tiny):
    """Tiny with a Dict observation space: rlkit refuses it unless it is flattened."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.observation_space = gym.spaces.Dict({"t": gym.spaces.Box(0.0, 100.0, (1,), np.float32),
                                                  "phase": gym.spaces.Discrete(3)})

    def _obs(self) -> dict[str, Any]:
        return {"t": np.array([self.t], np.float32), "phase": self.t % 3}


class TinyPixels(Tiny):
    """Games of ``length`` steps on a ``size`` x ``size`` RGB frame (36: the Nature CNN's smallest input) whose
    brightness is the step count; the reward is ``-|action|``, so the best policy holds still. Its constructor takes no render_mode."""

    metadata = {"render_modes": []}

    def __init__(self, length: int = 10, size: int = 36):  # Tiny's reset; not Tiny's constructor (it records kwargs)
        self.length, self.size = length, size
        self.observation_space = gym.spaces.Box(0, 255, (size, size, 3), np.uint8)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.t = 0

    def _obs(self) -> np.ndarray:
        return np.full((self.size, self.size, 3), min(255, 20 * self.t), np.uint8)

    def step(self, action):
        self.t += 1
        return self._obs(), -float(np.abs(action).sum()), self.t >= self.length, False, {}


class TinyBroken(Tiny):
    """Tiny that returns NaN as its ``broken`` output ("reward" or "observation") at step ``at`` of the ``episode``-th
    episode it plays (counting from 1)."""

    def __init__(self, broken: str = "reward", at: int = 3, episode: int = 1, **kwargs: Any):
        super().__init__(**kwargs)
        self.broken, self.at, self.episode, self.episodes = broken, at, episode, 0

    def reset(self, *, seed=None, options=None):
        self.episodes += 1
        return super().reset(seed=seed, options=options)

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        if self.t == self.at and self.episodes == self.episode:
            if self.broken == "reward":
                reward = float("nan")
            else:
                obs = np.full_like(obs, np.nan)
        return obs, reward, terminated, truncated, info


class TinyShifted(Tiny):
    """Tiny whose actions are ``Discrete(3, start=-1)`` (left, stay, right) and pay their own value: the best
    policy always plays +1. It refuses an action outside its space, as gymnasium's own envs assert."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.action_space = gym.spaces.Discrete(3, start=-1)

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is outside {self.action_space}")
        return super().step(action)


class TinyMulti(Tiny):
    """Tiny whose actions are ``MultiDiscrete([2, 3], start=[0, 1])``, paying 1 for each entry at its best value,
    ``[1, 3]``: the best policy earns 2 a step."""

    best = np.array([1, 3])

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.action_space = gym.spaces.MultiDiscrete([2, 3], start=[0, 1])

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is outside {self.action_space}")
        self.t += 1
        return self._obs(), float((np.asarray(action) == self.best).sum()), self.t >= self.length, False, {}


class TinyBits(TinyMulti):
    """Tiny whose actions are ``MultiBinary(3)``, paying 1 for each bit of ``[1, 0, 1]``: at best 3 a step."""

    best = np.array([1, 0, 1])

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.action_space = gym.spaces.MultiBinary(3)


class TinyGrid(TinyPixels):
    """TinyPixels with a 7x7 view (a grid world's, too small for the Nature CNN) and ``Discrete(2)`` actions paying
    their value: the best policy earns ``length``."""

    def __init__(self, length: int = 10, size: int = 7):
        super().__init__(length, size)
        self.action_space = gym.spaces.Discrete(2)

    def step(self, action):
        self.t += 1
        return self._obs(), float(action), self.t >= self.length, False, {}


class TinyScalar(Tiny):
    """Tiny whose observation is a scalar (a ``Box`` of shape ``()``): the step count."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.observation_space = gym.spaces.Box(0.0, 100.0, (), np.float32)

    def _obs(self) -> np.ndarray:
        return np.array(self.t, np.float32)  # 0-d


class TinyMatrixActions(Tiny):
    """Box actions of ``shape`` ((2, 2) by default; () a scalar) paying minus the squared distance to
    :data:`MATRIX_TARGET` (or its first entry): the env refuses any action not of its own shape and bounds."""

    def __init__(self, shape: tuple[int, ...] = (2, 2), **kwargs: Any):
        super().__init__(**kwargs)
        self.action_space = gym.spaces.Box(-1.0, 1.0, tuple(shape), np.float32)
        self.target = MATRIX_TARGET.reshape(-1)[:max(1, int(np.prod(shape)))].reshape(tuple(shape))

    def step(self, action):
        assert np.shape(action) == self.action_space.shape and self.action_space.contains(
            np.asarray(action, np.float32)), action
        self.t += 1
        return self._obs(), -float(np.sum((np.asarray(action) - self.target) ** 2)), self.t >= self.length, False, {}


class TinyArrayReward(Tiny):
    """Tiny paying its reward as an array of ``reward_entries`` entries (``np.array([r])`` for 1)."""

    def __init__(self, reward_entries: int = 1, **kwargs: Any):
        super().__init__(**kwargs)
        self.reward_entries = reward_entries

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, np.full(self.reward_entries, reward, np.float32), terminated, truncated, info


class TinyMisshapen(Tiny):
    """Tiny whose observations grow an entry its space does not have from step ``wrong_from`` (0: at reset)."""

    def __init__(self, wrong_from: int = 0, **kwargs: Any):
        super().__init__(**kwargs)
        self.wrong_from = wrong_from

    def _obs(self) -> np.ndarray:
        return np.zeros(3 if self.t >= self.wrong_from else 2, np.float32)


MATRIX_TARGET = np.array([[0.5, -0.5], [0.25, 0.0]], np.float32)


gym.register(id="Tiny-v0", entry_point=Tiny, max_episode_steps=50)
gym.register(id="TinyArrayReward-v0", entry_point=TinyArrayReward, max_episode_steps=50)
gym.register(id="TinyMisshapen-v0", entry_point=TinyMisshapen, max_episode_steps=50)
gym.register(id="TinyMatrixActions-v0", entry_point=TinyMatrixActions, max_episode_steps=50)
gym.register(id="TinyScalarActions-v0", entry_point=TinyMatrixActions, max_episode_steps=50, kwargs={"shape": ()})
gym.register(id="TinyScalar-v0", entry_point=TinyScalar, max_episode_steps=50)
gym.register(id="TinyDict-v0", entry_point=TinyDict, max_episode_steps=50)
gym.register(id="TinyBroken-v0", entry_point=TinyBroken, max_episode_steps=50)
gym.register(id="TinyShifted-v0", entry_point=TinyShifted, max_episode_steps=50)
gym.register(id="TinyMulti-v0", entry_point=TinyMulti, max_episode_steps=50)
gym.register(id="TinyBits-v0", entry_point=TinyBits, max_episode_steps=50)
gym.register(id="TinyPixels-v0", entry_point=TinyPixels, max_episode_steps=50)
gym.register(id="TinyGrid-v0", entry_point=TinyGrid, max_episode_steps=50)
