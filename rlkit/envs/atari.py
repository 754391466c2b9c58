"""Atari with the standard DQN preprocessing (Mnih et al. 2015; Machado et al. 2018 for sticky actions).

Two builds with the same semantics:

* ``ale``: ale-py's C++ ``AtariVectorEnv``, which steps, pools, resizes and stacks in native threads. About 2.8x
  faster than the gymnasium wrappers on this project's 2-core machine (see benchmarks/RESULTS.md). Default.
* ``gymnasium``: ``AtariPreprocessing`` + fire-on-reset + ``FrameStackObservation`` in Python, one env per
  process. Used where RGB frames are needed (``evaluate.py --video``).

Both: up to 30 no-op actions on reset, frame skip 4 with a max over the last two frames, 84x84 grayscale, a stack of
4 frames zero-padded at the start of a game, FIRE on reset in games that need it, 108,000 frames (27,000 agent
steps) per game at most. Raw rewards and game-over terminals come out; clipping and life-loss terminals are added
by :class:`rlkit.envs.signals.EpisodeSignals` for training only.
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

FRAME_SKIP = 4
FRAME_STACK = 4
SCREEN_SIZE = 84
NOOP_MAX = 30
MAX_FRAMES_PER_GAME = 108_000
STICKY_ACTION_PROB = 0.25
"""Repeat-action probability with ``sticky_actions=True`` (Machado et al. 2018, ALE v5's default)."""


def make_ale_vector(game: str, num_envs: int, sticky_actions: bool, frame_stack: int = FRAME_STACK
                    ) -> gym.vector.VectorEnv:
    """ale-py's native vector env with the standard preprocessing and raw rewards."""
    from ale_py.vector_env import AtariVectorEnv

    return AtariVectorEnv(
        game,
        num_envs,
        num_threads=min(num_envs, os.cpu_count() or 1),
        autoreset_mode=AutoresetMode.SAME_STEP,
        repeat_action_probability=STICKY_ACTION_PROB if sticky_actions else 0.0,
        max_num_frames_per_episode=MAX_FRAMES_PER_GAME,
        img_height=SCREEN_SIZE,
        img_width=SCREEN_SIZE,
        grayscale=True,
        stack_num=frame_stack,
        frameskip=FRAME_SKIP,
        maxpool=True,
        noop_max=NOOP_MAX,
        episodic_life=False,  # life loss is a training signal only: EpisodeSignals adds it
        life_loss_info=False,
        reward_clipping=False,  # likewise
        use_fire_reset=True,
    )


class FireOnReset(gym.Wrapper):
    """Press FIRE after a reset in games that wait for it (Breakout), as ale-py's vector env does."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        meanings = env.unwrapped.get_action_meanings()
        self._fire = meanings.index("FIRE") if "FIRE" in meanings else None

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        if self._fire is not None:
            obs, _, terminated, truncated, info = self.env.step(self._fire)
            if terminated or truncated:
                obs, info = self.env.reset(**kwargs)
        return obs, info


def make_gymnasium_atari(env_id: str, sticky_actions: bool, render: bool = False,
                         env_kwargs: dict[str, Any] | None = None, frame_stack: int = FRAME_STACK) -> gym.Env:
    """One Atari env with gymnasium's preprocessing wrappers (needs OpenCV); ``env_kwargs`` (``mode``,
    ``difficulty``) go to ale-py's env, over the standard settings."""
    settings = {
        "frameskip": 1,  # AtariPreprocessing skips and max-pools itself
        "repeat_action_probability": STICKY_ACTION_PROB if sticky_actions else 0.0,
        "max_num_frames_per_episode": MAX_FRAMES_PER_GAME,
    }
    env = gym.make(env_id, **{**settings, **(env_kwargs or {})}, render_mode="rgb_array" if render else None)
    env = gym.wrappers.AtariPreprocessing(
        env, noop_max=NOOP_MAX, frame_skip=FRAME_SKIP, screen_size=SCREEN_SIZE, grayscale_obs=True
    )
    env = FireOnReset(env)
    return gym.wrappers.FrameStackObservation(env, frame_stack, padding_type=np.zeros((SCREEN_SIZE, SCREEN_SIZE), np.uint8))
