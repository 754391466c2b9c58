"""Environments: ``make_env(name, ...)`` gives a vector env with the standard wrappers for its family."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.wrappers.vector import RescaleAction
from gymnasium.vector import AutoresetMode

from rlkit.envs.atari import FRAME_STACK, make_ale_vector, make_gymnasium_atari
from rlkit.envs.custom import (ScalarRewards, channels_first_images, check_env_kwargs, check_observation_space,
                               env_kwargs_error, flat_box_actions, one_hot_observations, parse_env_kwargs,
                               vector_scalars, zero_based_actions)
from rlkit.envs.partial import VELOCITY_ENTRIES, MaskVelocity
from rlkit.envs.names import FAMILIES, Family, ResolvedEnv, resolve_env
from rlkit.envs.signals import EpisodeSignals
from rlkit.errors import UserError

BACKENDS = ("auto", "ale", "gymnasium")
Wrapper = Callable[[gym.Env], gym.Env]
"""A ``gym.Wrapper`` class or any function ``env -> env``, applied to each sub-env."""


def make_env(
    name: str,
    num_envs: int = 1,
    seed: int | None = None,
    *,
    training: bool = True,
    sticky_actions: bool = False,
    backend: str = "auto",
    render: bool = False,
    env_kwargs: Mapping[str, Any] | None = None,
    wrappers: Sequence[Wrapper] = (),
    partially_observed: bool = False,
) -> EpisodeSignals:
    """Build ``num_envs`` copies of an environment as one vector env that resets finished copies itself.

    Args:
        name: a short name (``Breakout``, ``HalfCheetah``, ``CartPole``, ``LunarLander``), a full gymnasium id, or
            ``module:EnvId`` for an env that importing ``module`` registers.
        num_envs: number of sub-environments stepped together.
        seed: seeds the first ``reset()`` (sub-env ``i`` gets ``seed + i``).
        training: clip rewards to their sign and end episodes on a lost life (Atari); evaluation envs
            (``training=False``) give raw rewards and whole games.
        sticky_actions: Atari only: repeat the previous action with probability 0.25 (Machado et al. 2018).
        backend: Atari only: ``ale`` (ale-py's native vector env, fastest), ``gymnasium`` (Python wrappers,
            can render RGB frames) or ``auto`` (``ale`` unless ``render``).
        render: make ``env.render()`` return RGB frames (for videos).
        env_kwargs: keyword arguments of the env's constructor (``{"continuous": True}``); JSON values, since runs
            save them for evaluate.py.
        wrappers: ``gym.Wrapper`` classes or functions ``env -> env`` applied in order to each sub-env
            (``[FlattenObservation]``); Atari then uses the ``gymnasium`` backend. Runs do not save them: pass them
            again wherever the env is rebuilt.
        partially_observed: hide what makes the env Markov, the test bed of recurrent policies: Atari shows one
            frame instead of a stack of 4; classic control and Box2D envs have their velocity entries zeroed
            (:class:`rlkit.envs.partial.MaskVelocity`; other envs are refused).

    Observations must be one array (a Box space). Wholly discrete ones (``Discrete``, ``MultiDiscrete``, a
    ``Tuple`` or ``Dict`` of them: the toy-text envs) become float32 one-hot codes; other spaces are refused with
    the wrapper to use. Channels-last uint8 images (CarRacing's (96, 96, 3)) come channels first, (3, 96, 96), as
    the convolutional torsos take them; scalars (a ``Box`` of shape ``()``) come as vectors of one entry.
    Box actions with finite bounds are rescaled to [-1, 1] (the env maps them back to its bounds); Discrete actions
    that start elsewhere than 0 are chosen as ``0 .. n-1`` and shifted back for the env; Box actions that are not a
    vector (a matrix, a scalar) are chosen as the vector of their entries and reshaped for the env.

    Returns:
        An :class:`EpisodeSignals`-wrapped vector env; ``env.resolved`` tells the id and family.
    """
    if num_envs < 1:
        raise UserError(f"num_envs must be at least 1, got {num_envs}")
    if backend not in BACKENDS:
        raise UserError(f"unknown env backend {backend!r}: use one of {', '.join(BACKENDS)}")
    env_kwargs = check_env_kwargs(env_kwargs)
    resolved = resolve_env(name)
    # Atari's observations are frames already in channel order (and a wrapper would cost it ale-py's native vector env)
    wrappers = (list(wrappers) if resolved.family == "atari" else
                [*wrappers, ScalarRewards, vector_scalars, one_hot_observations, channels_first_images,
                 zero_based_actions, flat_box_actions])
    if sticky_actions and resolved.family != "atari":
        raise UserError(f"--sticky-actions repeats Atari actions (ALE's repeat_action_probability); "
                        f"{resolved.env_id} is no Atari game: drop the flag")
    if partially_observed and resolved.family != "atari":
        if resolved.env_id not in VELOCITY_ENTRIES:
            raise UserError(f"--partially-observed hides the velocities of {', '.join(VELOCITY_ENTRIES)} and shows "
                            f"Atari one frame; {resolved.env_id} has none it knows: drop the flag, or hide what "
                            "you want hidden with your own wrapper")
        wrappers.insert(0, MaskVelocity)  # on the env's own observation, before any user wrapper reshapes it
    if render:
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame renders off-screen; no display is needed
    try:
        vec = _make_vector(resolved, num_envs, sticky_actions, backend, render, env_kwargs, wrappers,
                           frame_stack=1 if partially_observed else FRAME_STACK)
    except (TypeError, ValueError, AssertionError, RuntimeError, KeyError) as error:  # ALE: RuntimeError; a map: KeyError
        if render and "render_mode" in str(error):
            raise UserError(f"{resolved.env_id} takes no render_mode, so its episodes cannot be filmed: give its "
                            "constructor a render_mode argument and a render() that returns RGB frames, or drop "
                            "--capture-video") from None
        if not env_kwargs:
            raise
        raise env_kwargs_error(resolved.env_id, env_kwargs, error) from None
    try:
        check_observation_space(vec.single_observation_space, resolved.env_id)
    except UserError:
        vec.close()
        raise
    vec = _normalized_actions(vec)
    is_atari = resolved.family == "atari"
    env = EpisodeSignals(vec, clip_rewards=training and is_atari, life_loss_terminal=training and is_atari, seed=seed)
    env.resolved = resolved
    if seed is not None:
        env.action_space.seed(seed)
        env.single_action_space.seed(seed)
    return env


def _make_vector(resolved: ResolvedEnv, num_envs: int, sticky_actions: bool, backend: str, render: bool,
                 env_kwargs: dict[str, Any], wrappers: list[Wrapper], frame_stack: int = FRAME_STACK
                 ) -> gym.vector.VectorEnv:
    if resolved.family == "atari":
        python_only = render or env_kwargs or wrappers  # ale-py's native vector env takes none of these
        if backend == "ale" and python_only:
            raise UserError("the 'ale' backend cannot render RGB frames, take env kwargs or apply wrappers: use "
                            "--backend gymnasium")
        if backend == "ale" or (backend == "auto" and not python_only):
            return make_ale_vector(resolved.game, num_envs, sticky_actions, frame_stack)

        def make_one() -> gym.Env:
            env = make_gymnasium_atari(resolved.env_id, sticky_actions, render, env_kwargs, frame_stack)
            for wrapper in wrappers:
                env = wrapper(env)
            return env

        return gym.vector.SyncVectorEnv([make_one] * num_envs, autoreset_mode=AutoresetMode.SAME_STEP)
    return gym.make_vec(
        resolved.env_id,
        num_envs=num_envs,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
        wrappers=wrappers,
        # Only when frames are wanted: a user's env whose constructor takes no render_mode is then still made.
        **({"render_mode": "rgb_array"} if render else {}),
        **env_kwargs,
    )


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


__all__ = ["make_env", "resolve_env", "ResolvedEnv", "EpisodeSignals", "Family", "FAMILIES", "Wrapper",
           "check_observation_space", "parse_env_kwargs"]
