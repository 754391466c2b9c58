"""Returns of a saved run's policy played by hand in plain gymnasium envs: an independent check of what
``evaluate.py`` reports (whole games, raw rewards, episode ``i`` seeded with ``seed + i``)."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np

from rlkit.jobs import JOBS, read_checkpoint
from rlkit.envs import resolve_env


def rebuild_agent(run: Path):
    """(agent, run settings) rebuilt from the run's checkpoint (the one line to change if the rebuild moves)."""
    return JOBS["agent"].rebuild(read_checkpoint(run), "cpu")


def returns_by_hand(run: Path, episodes: int, seed: int) -> list[float]:
    """The greedy policy's return in each of ``episodes`` single gymnasium envs, one game each. Box actions go
    through [-1, 1] -> the env's bounds, the convention rlkit's agents act in. Classic control and MuJoCo only."""
    agent, settings = rebuild_agent(run)
    resolved = resolve_env(settings.env)
    assert resolved.family != "atari", "Atari games need their preprocessing: not by hand"
    env_id = resolved.env_id
    returns = []
    for i in range(episodes):
        env = gym.make(env_id)
        if isinstance(env.action_space, gym.spaces.Box):
            ones = np.ones(env.action_space.shape, np.float32)
            env = gym.wrappers.RescaleAction(env, -ones, ones)
        obs, _ = env.reset(seed=seed + i)
        total, done = 0.0, False
        while not done:
            action = agent.act(obs[None], explore=False, deterministic=True)[0]
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        env.close()
        returns.append(total)
    return returns

