"""The one wrapper every rlkit environment wears: training signals apart from the raw score.

Agents learn from clipped rewards and treat a lost life as the end of an episode (Mnih et al. 2015), but the
numbers people report are raw game scores over whole games. This wrapper keeps both: it changes the reward and
``terminated`` it returns only when ``training`` is set, and it always reports finished episodes' raw return
and length in ``info``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from rlkit.errors import BadEnvOutput


class EpisodeSignals(gym.vector.VectorWrapper):
    """Reward clipping and life-loss terminals for training, raw episode statistics always.

    The wrapped vector env must reset finished sub-envs in the same step (``AutoresetMode.SAME_STEP``).

    ``step`` adds to ``info``:
        ``final_obs``: a dense array shaped like the observations holding the true next observation of every
            sub-env (the last observation of a finished episode, the new observation otherwise). Replay stores
            this, never the first observation of the next episode.
        ``episode_done``: bool mask of sub-envs whose game ended (game over or time limit) in this step.
        ``episode_return``, ``episode_length``: raw return and length of those games (0 elsewhere).
    """

    def __init__(
        self,
        env: gym.vector.VectorEnv,
        *,
        clip_rewards: bool = False,
        life_loss_terminal: bool = False,
        seed: int | None = None,
    ):
        super().__init__(env)
        self.clip_rewards = clip_rewards
        self.life_loss_terminal = life_loss_terminal
        self._first_seed = seed
        self._returns = np.zeros(self.num_envs, dtype=np.float64)
        self._lengths = np.zeros(self.num_envs, dtype=np.int64)
        self._lives: np.ndarray | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is None and self._first_seed is not None:
            seed, self._first_seed = self._first_seed, None  # make_env's seed applies to the first reset
        try:
            obs, info = self.env.reset(seed=seed, options=options)
        except ValueError as error:
            raise self._unfit_observation(error) from None
        self._check_finite("observation", obs)
        self._returns[:] = 0.0
        self._lengths[:] = 0
        self._lives = np.asarray(info["lives"]).copy() if "lives" in info else None
        return obs, info

    def step(self, actions):
        try:  # try costs nothing in Python 3.11 unless it raises (a context manager would, every step)
            obs, reward, terminated, truncated, info = self.env.step(actions)
        except ValueError as error:
            raise self._unfit_observation(error) from None
        reward = np.asarray(reward, dtype=np.float64)
        acts = np.asarray(actions)
        env_to_blame = acts.dtype.kind != "f" or bool(np.isfinite(acts).all())  # NaN actions: a diverged agent's
        if env_to_blame:
            self._check_finite("reward", reward, self._lengths + 1)
            self._check_finite("observation", obs, self._lengths + 1)
        terminated = np.asarray(terminated, dtype=bool)
        truncated = np.asarray(truncated, dtype=bool)
        done = terminated | truncated

        self._returns += reward
        self._lengths += 1
        info = dict(info)
        info["episode_done"] = done
        info["episode_return"] = np.where(done, self._returns, 0.0)
        info["episode_length"] = np.where(done, self._lengths, 0)
        self._returns[done] = 0.0
        self._lengths[done] = 0
        info["final_obs"] = _dense_final_obs(obs, info.get("final_obs"), done)
        if done.any() and env_to_blame:
            self._check_finite("observation", info["final_obs"], np.where(done, info["episode_length"], 0))

        if self._lives is not None and "lives" in info:
            lives = np.asarray(info["lives"])
            life_lost = (lives < self._lives) & ~done  # after a reset 'lives' is the new game's count
            self._lives = lives.copy()
            if self.life_loss_terminal:
                terminated = terminated | life_lost
        if self.clip_rewards:
            reward = np.sign(reward)
        return obs, reward.astype(np.float32), terminated, truncated, info


    def _unfit_observation(self, error: ValueError) -> Exception:
        """An observation of another shape than the env's space says (or None) fails in gymnasium's vector env as
        numpy's "Output array is the wrong shape": which env and space, in one line. Any other error as it was."""
        if "Output array" not in str(error):
            return error
        env_id = getattr(getattr(self, "resolved", None), "env_id", "the env")
        return BadEnvOutput(f"{env_id} returned an observation that its observation space "
                            f"{self.single_observation_space} does not hold ({error}): make the env's observations "
                            "and its observation_space agree")

    def _check_finite(self, what: str, values: np.ndarray, steps: np.ndarray | None = None) -> None:
        """Refuse NaN or infinity from the env where it arises, not as a NaN loss many updates later. ``values``
        has one row per sub-env; ``steps`` tells each sub-env's step in its episode (None: a reset)."""
        values = np.asarray(values)
        if values.dtype.kind != "f" or np.isfinite(values).all():
            return
        env_id = getattr(getattr(self, "resolved", None), "env_id", "the env")
        rows = ~np.isfinite(values.reshape(len(values), -1))
        i = int(np.flatnonzero(rows.any(axis=1))[0])
        bad = values.reshape(len(values), -1)[i][rows[i]][0]
        when = "its reset" if steps is None else f"step {int(steps[i])} of an episode"
        raise BadEnvOutput(f"{env_id} returned a non-finite {what} ({bad}) at {when} (sub-env {i}): an agent "
                           "cannot learn from it; fix the env, or replace such values in a wrapper "
                           "(make_env(..., wrappers=[...]))")


def _dense_final_obs(obs: np.ndarray, final_obs: Any, done: np.ndarray) -> np.ndarray:
    """The true next observation of every sub-env, from SAME_STEP autoreset's sparse ``final_obs``."""
    if not done.any():
        return obs
    dense = np.array(obs, copy=True)
    for i in np.flatnonzero(done):
        dense[i] = final_obs[i]  # ale-py gives a full array, gymnasium an object array with None elsewhere
    return dense
