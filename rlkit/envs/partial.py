"""Partially observed versions of Markov envs, the test beds of recurrent policies: classic control and Box2D with
their velocity entries hidden, and Atari with one frame instead of a stack (see :func:`rlkit.envs.make_env`'s
``partially_observed``)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from rlkit.errors import UserError

VELOCITY_ENTRIES: dict[str, tuple[int, ...]] = {
    # rl-baselines3-zoo's MaskVelocityWrapper table (utils/wrappers.py), and Acrobot's two angular velocities
    "CartPole-v1": (1, 3),
    "MountainCar-v0": (1,),
    "MountainCarContinuous-v0": (1,),
    "Pendulum-v1": (2,),
    "LunarLander-v3": (2, 3, 5),
    "LunarLanderContinuous-v3": (2, 3, 5),
    "Acrobot-v1": (4, 5),
}
"""Observation entries that are velocities, per env id."""


class MaskVelocity(gym.ObservationWrapper):
    """Zero the velocity entries of the observation (its space is unchanged), so only positions and angles are
    seen: the policy must infer velocities from the history it remembers."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        env_id = env.spec.id if env.spec is not None else ""
        if env_id not in VELOCITY_ENTRIES:
            raise UserError(f"--partially-observed hides the velocities of {', '.join(VELOCITY_ENTRIES)} (and "
                            f"shows Atari one frame); {env_id or 'this env'} has no known velocity entries: drop "
                            "the flag, or mask your env's observation with your own wrapper")
        self.mask = np.ones(env.observation_space.shape, dtype=env.observation_space.dtype)
        self.mask[list(VELOCITY_ENTRIES[env_id])] = 0

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return observation * self.mask
