"""Environments: ``make_env(name, ...)`` gives a vector env with the standard wrappers for its family."""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np
from gymnasium.wrappers.vector import RescaleAction
from gymnasium.vector import AutoresetMode

from rlkit.envs.atari import make_ale_vector, make_gymnasium_atari
from rlkit.envs.names import FAMILIES, Family, ResolvedEnv, resolve_env
from rlkit.envs.signals import EpisodeSignals
from rlkit.errors import UserError

BACKENDS = ("auto", "ale", "gymnasium")


def make_env(
    name: str,
    num_envs: int = 1,
    seed: int | None = None,
    *,
    training: bool = True,
    sticky_actions: bool = False,
    backend: str = "auto",
    render: bool = False,
) -> EpisodeSignals:
    """Build ``num_envs`` copies of an environment as one vector env that resets finished copies itself.

    Args:
        name: a short name (``Breakout``, ``HalfCheetah``, ``CartPole``) or a full gymnasium id.
        num_envs: number of sub-environments stepped together.
        seed: seeds the first ``reset()`` (sub-env ``i`` gets ``seed + i``).
        training: clip rewards to their sign and end episodes on a lost life (Atari); evaluation envs
            (``training=False``) give raw rewards and whole games.
        sticky_actions: Atari only: repeat the previous action with probability 0.25 (Machado et al. 2018).
        backend: Atari only: ``ale`` (ale-py's native vector env, fastest), ``gymnasium`` (Python wrappers,
            can render RGB frames) or ``auto`` (``ale`` unless ``render``).
        render: make ``env.render()`` return RGB frames (for videos).

    Box actions with finite bounds are rescaled to [-1, 1] (the env maps them back to its bounds).

    Returns:
        An :class:`EpisodeSignals`-wrapped vector env; ``env.resolved`` tells the id and family.
    """
    if num_envs < 1:
        raise UserError(f"num_envs must be at least 1, got {num_envs}")
    if backend not in BACKENDS:
        raise UserError(f"unknown env backend {backend!r}: use one of {', '.join(BACKENDS)}")
    resolved = resolve_env(name)
    if render:
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame renders off-screen; no display is needed
    if resolved.family == "atari":
        if backend == "ale" and render:
            raise UserError("the 'ale' backend cannot render RGB frames: use --backend gymnasium")
        if backend == "ale" or (backend == "auto" and not render):
            vec = make_ale_vector(resolved.game, num_envs, sticky_actions)
        else:
            vec = gym.vector.SyncVectorEnv(
                [lambda: make_gymnasium_atari(resolved.env_id, sticky_actions, render)] * num_envs,
                autoreset_mode=AutoresetMode.SAME_STEP,
            )
    else:
        vec = gym.make_vec(
            resolved.env_id,
            num_envs=num_envs,
            vectorization_mode="sync",
            vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
            render_mode="rgb_array" if render else None,
        )
    vec = _normalized_actions(vec)
    is_atari = resolved.family == "atari"
    env = EpisodeSignals(vec, clip_rewards=training and is_atari, life_loss_terminal=training and is_atari, seed=seed)
    env.resolved = resolved
    if seed is not None:
        env.action_space.seed(seed)
        env.single_action_space.seed(seed)
    return env


def _normalized_actions(vec: gym.vector.VectorEnv) -> gym.vector.VectorEnv:
    """Box actions with finite bounds become [-1, 1], mapped linearly to the env's bounds here, in one place, so
    every agent works in normalized units."""
    space = vec.single_action_space
    if not isinstance(space, gym.spaces.Box) or not (np.isfinite(space.low).all() and np.isfinite(space.high).all()):
        return vec
    if (space.low == -1).all() and (space.high == 1).all():
        return vec
    ones = np.ones(space.shape, dtype=np.float32)
    return RescaleAction(vec, -ones, ones)


__all__ = ["make_env", "resolve_env", "ResolvedEnv", "EpisodeSignals", "Family", "FAMILIES"]
