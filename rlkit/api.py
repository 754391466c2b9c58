"""The Python API: an agent trained, saved, loaded and used in a few lines, through the same job and loop as
``train.py`` (the same presets, validation, checkpoints, TensorBoard and evaluations)::

    import rlkit

    model = rlkit.make("sac", "Pendulum", learning_rate=1e-3)
    model.learn(20_000)                    # more calls go on training
    model.save("pendulum.pt")              # python evaluate.py pendulum.pt reads it
    model = rlkit.load("pendulum.pt")
    action = model.predict(obs)            # one observation or a batch; actions in the env's own units
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rlkit.agents import Agent
from rlkit.checkpoint import non_finite_tensors, save_checkpoint
from rlkit.cli.train import build_parser
from rlkit.config import apply_flags
from rlkit.envs import Wrapper
from rlkit.envs.custom import OWN_ACTION_WRAPPERS, starts_elsewhere
from rlkit.errors import UserError, close_names
from rlkit.jobs import JOBS, load_run
from rlkit.jobs.agent import (EVAL_SEED_OFFSET, AgentJob, AgentSettings, build_agent, env_maker, evaluate_agent,
                              run_wrappers)
from rlkit.jobs.base import new_run_dir
from rlkit.loop import Callback, Loop
from rlkit.runlock import RunLock
from rlkit.runtime import pick_device

NOT_SETTINGS = ("agent", "env", "total_steps", "run_dir", "resume", "print_config", "no_progress", "stretch_schedules",
                "config_file")
"""Flags of train.py that are not keyword arguments of :func:`make` (named otherwise, or meaningless here)."""


def make(agent: str, env: str, wrappers: Sequence[Wrapper] = (), config: str | Path | Sequence[str | Path] = (),
         **options: Any) -> Model:
    """A new agent for ``env``: ``options`` are its config's fields (``learning_rate=1e-3``) and the run's settings
    (``seed``, ``num_envs``, ``device``, ``eval_episodes``, ``eval_interval``, ``env_kwargs={...}``...), as train.py's
    flags with underscores. ``wrappers`` are applied to every env of the run (``FlattenObservation`` for a Dict
    observation space); they are not saved, so pass them again to :func:`load`. ``config``: hyperparameter files,
    as ``--config`` (options override them). Unset ones take the preset for the env, as on the command line. For an agent with a learning rate
    per network (SAC: ``policy_lr``, ``q_lr``), ``learning_rate`` sets them all unless they are given too.

    Raises:
        UserError: an unknown agent, env or option (with the close matches), or a value its config refuses.
    """
    for what, name in (("agent", agent), ("env", env)):
        if not isinstance(name, str):
            spec = getattr(getattr(name, "spec", None), "id", None)
            raise UserError(f"rlkit.make takes the {what} by name, got a {type(name).__name__}"
                            + (f": pass {spec!r} (rlkit makes its own envs from the name, for training, evaluation and "
                               "evaluate.py; give your wrappers as wrappers=[...])" if spec else
                               "" if what == "agent" else ": register your env with gymnasium.register and pass its id, "
                               "or 'module:EnvId' for one registered on import"))
    job = JOBS["agent"]
    names = {"agent": agent, "env": env}
    files = [config] if isinstance(config, (str, Path)) else list(config)
    args = build_parser(job, {**names, "config_files": files}).parse_args(
        ["--agent", agent, "--env", env, "--no-progress", *(f"--config={file}" for file in files)])
    allowed = sorted(key for key in vars(args) if key not in NOT_SETTINGS)
    rates = [key for key in allowed if key.endswith("_lr")]
    if "learning_rate" in options and "learning_rate" not in allowed and rates:
        # SB3's one learning_rate, for agents with one per network (SAC's policy_lr and q_lr): it sets them all
        options = {**{key: options["learning_rate"] for key in rates},
                   **{key: value for key, value in options.items() if key != "learning_rate"}}
    for key, value in options.items():
        if key not in allowed:
            close = close_names(key, allowed)
            raise UserError(f"rlkit.make got an unknown option {key!r}"
                            + (f": did you mean {', '.join(close)}?" if close else f"; options: {', '.join(allowed)}"))
        setattr(args, key, list(value) if isinstance(value, tuple) else value)
    model = Model(job, args, wrappers)
    # Every option is validated now; the budget's warnings (a budget that is not a whole number of rollouts) wait
    # for learn(), which knows the budget.
    with contextlib.redirect_stderr(io.StringIO()):
        model.settings, model.config = model._new_run(total_steps=None)
    return model


def load(path: str | Path, device: str = "auto", wrappers: Sequence[Wrapper] = ()) -> Model:
    """The agent saved by :meth:`Model.save` or by train.py (a run directory or a checkpoint file); ``wrappers``:
    those it was trained with."""
    job, checkpoint = load_run(path)
    if not isinstance(job, AgentJob):
        raise UserError(f"{path} holds a {job.kind} run, and rlkit.load loads agents: use evaluate.py on it")
    model = Model(job, None, wrappers)
    model._agent, model.settings = job.rebuild(checkpoint, device, wrappers=wrappers)
    model.settings.device = device
    model.config = model._agent.config
    model._checkpoint = checkpoint
    return model


class Model:
    """An agent and its run: what :func:`make` and :func:`load` return. ``model.agent`` is the
    :class:`rlkit.agents.Agent` itself; ``model.run_dir`` holds what :meth:`learn` wrote."""

    def __init__(self, job: AgentJob, args: argparse.Namespace | None, wrappers: Sequence[Wrapper] = ()):
        self.job, self._args, self.wrappers = job, args, tuple(wrappers)
        self.settings: AgentSettings
        self.config: Any
        self.run_dir: Path | None = None
        self._agent: Agent | None = None
        self._loop: Loop | None = None  # kept open between learn() calls: its envs and replay go on
        self._checkpoint: dict[str, Any] | None = None  # a loaded run, continued by the first learn()
        self._face: EnvFace | None = None

    # ------------------------------------------------------------------ training
    def _new_run(self, total_steps: int | None) -> tuple[AgentSettings, Any]:
        """Settings and config as train.py makes them for a new run of ``total_steps`` (None: the preset's)."""
        self._args.total_steps = total_steps
        settings = self.job.new_settings(self._args, self.wrappers)
        chosen = self.job.hyperparams({**dataclasses.asdict(settings), "config_files": self._args.config_file or []})
        return settings, apply_flags(chosen.config, self._args)

    @property
    def steps(self) -> int:
        """Env steps trained so far."""
        if self._loop is not None:
            return self._loop.source.steps
        return self._checkpoint["loop"]["steps"] if self._checkpoint is not None else 0

    def learn(self, total_steps: int, run_dir: str | Path | None = None, callbacks: Sequence[Callback] = (),
              progress: bool = False) -> Model:
        """Train ``total_steps`` more env steps, evaluating and checkpointing into ``run_dir`` as train.py does
        (a new temporary directory when None; later calls keep the first one). The schedules (exploration,
        learning-rate annealing) stretch over the first call's budget, as ``--resume`` keeps them.
        ``callbacks`` (:class:`rlkit.Callback`) see each step, evaluation and checkpoint, and may stop early.

        Raises:
            UserError: a bad budget or run directory; Interrupted on Ctrl-C (the run is saved and resumable).
        """
        if not isinstance(total_steps, (int, np.integer)) or isinstance(total_steps, bool) or total_steps < 1:
            raise UserError(f"learn needs a whole number of steps of at least 1, got {total_steps!r}")
        total_steps = int(total_steps)
        if run_dir is not None and self.run_dir is not None and Path(run_dir) != self.run_dir:
            raise UserError(f"this model trains in {self.run_dir}: call learn() without run_dir, or save() it and "
                            "load() it to continue elsewhere")
        if self._loop is None:
            self._start(total_steps, run_dir)
        else:
            self._loop.config.total_steps = self.steps + total_steps
            self.settings.total_steps = self._loop.config.total_steps
        loop = self._loop
        loop.callbacks = list(callbacks)
        loop.config.progress = progress
        lock = RunLock(self.run_dir)
        try:
            loop.run(close=False)
        finally:
            lock.release()
        return self

    def _start(self, total_steps: int, run_dir: str | Path | None) -> None:
        """Build the loop: a new run, or the loaded one continued for ``total_steps`` more."""
        if self._checkpoint is None:
            settings, config = self._new_run(total_steps)
        else:
            settings, config = self.settings, self.config
            settings.total_steps = self.steps + total_steps
        name = self.job.run_name(settings)
        self.run_dir = new_run_dir(Path(run_dir), name) if run_dir is not None else Path(
            tempfile.mkdtemp(prefix=f"rlkit-{name.replace('/', '-')}-"))
        self._loop = self.job.build(settings, config, self.run_dir, resume=self._checkpoint, wrappers=self.wrappers)
        self.settings, self.config, self._agent = settings, config, self._loop.learner
        self._checkpoint = None

    def close(self) -> None:
        """Close the envs kept open between :meth:`learn` calls."""
        if self._loop is not None:
            self._loop.source.close()

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ saving
    def save(self, path: str | Path) -> Path:
        """Write the agent and its run (settings, config, counters) to the checkpoint file ``path``, which
        :func:`load`, ``evaluate.py`` and ``train.py --resume`` read. Replay is not saved (``--save-buffer`` is
        the run directory's). Returns the path.

        Raises:
            UserError: the agent's weights are not finite (a diverged run is not saved over anything).
        """
        path = Path(path)
        if path.is_dir():
            raise UserError(f"{path} is a directory: save() writes one checkpoint file, e.g. {path / 'model.pt'}")
        if self._loop is not None:
            payload = self._loop.checkpoint_payload()
        elif self._checkpoint is not None:
            payload = self._checkpoint
        else:  # never trained: a fresh run's state, as train.py would save it at step 0
            self._start_untrained()
            payload = self._loop.checkpoint_payload()
        bad = next(non_finite_tensors(payload["learner"], "learner"), None)
        if bad is not None:
            raise UserError(f"not saved: the agent's {bad[0]} holds {bad[1]} (training diverged)")
        save_checkpoint(path, {key: value for key, value in payload.items() if key not in ("format", "version")})
        return path

    def _start_untrained(self) -> None:
        """A loop for a run not yet trained (its budget the preset's), so that save() has a whole run to write."""
        self._start(self.settings.total_steps, None)

    # ------------------------------------------------------------------ using
    @property
    def agent(self) -> Agent:
        """The agent (built on first use for a model not trained yet)."""
        if self._agent is None:
            make = env_maker(self.settings, run_wrappers(self.settings, self.wrappers))
            env = make(self.settings.env, 1, training=False, sticky_actions=self.settings.sticky_actions)
            self._agent = build_agent(self.settings, self.config, env.single_observation_space,
                                      env.single_action_space, pick_device(self.settings.device))
            env.close()
        return self._agent

    def predict(self, obs: Any, deterministic: bool = True, episode_start: Any = None) -> np.ndarray:
        """The policy's action for one observation or a batch of them (one more leading axis), in the env's own
        units (a Box action within its bounds, a Discrete one from its start). ``deterministic=False`` samples.

        An observation is the env's own (FrozenLake's state number, CarRacing's (96, 96, 3) frame, a Dict the
        model's ``wrappers`` flatten): it goes through the observation wrappers every env of the run has, as in
        training. What the agent itself reads (the one-hot code, the (3, 96, 96) frame) is taken as it is. Atari
        observations are the stacked, resized frames of :func:`rlkit.envs.make_env`, not raw screens.

        A recurrent policy (``recurrent="lstm"``) carries its memory of each game from call to call, one row per
        game: pass ``episode_start=True`` (or one flag per row) with the first observation of a game, as SB3's
        RecurrentPPO takes it, so that the memory of the game before is forgotten.
        """
        agent = self.agent
        batch, single = self._agent_observations(obs)
        if episode_start is not None:
            # a first call, or one with another batch size, starts every row afresh anyway
            agent.new_episodes(np.broadcast_to(np.asarray(episode_start, dtype=bool), (len(batch),)).copy())
        if batch.dtype.kind in "fc" and not np.isfinite(batch).all():
            raise UserError(f"predict got an observation holding non-finite values ({batch[~np.isfinite(batch)][0]}): "
                            "check what produced it")
        actions = self._in_env_units(agent.act(batch.astype(agent.obs_space.dtype, copy=False), explore=False,
                                               deterministic=deterministic))
        return actions[0] if single else actions

    def _agent_observations(self, obs: Any) -> tuple[np.ndarray, bool]:
        """``obs`` as a batch of what the agent reads, and whether it was one observation."""
        shape = self.agent.obs_space.shape
        array = None if isinstance(obs, (dict, tuple)) else np.asarray(obs)
        if array is not None and array.dtype != object:
            if array.shape == shape:
                return array[None], True
            if array.ndim == len(shape) + 1 and array.shape[1:] == shape:
                return array, False
        face = self.face
        raw = face.obs_space
        if face.obs_wrappers:
            if raw.shape is None:  # a Dict or Tuple: one observation as the space's own type, a batch as a list
                if isinstance(obs, (dict, tuple)):
                    return face.observation(obs)[None], True
                if isinstance(obs, list) and obs and all(isinstance(each, (dict, tuple)) for each in obs):
                    return np.stack([face.observation(each) for each in obs]), False
            elif array is not None and array.shape == raw.shape:
                return face.observation(array)[None], True
            elif array is not None and array.ndim == len(raw.shape) + 1 and array.shape[1:] == raw.shape:
                return np.stack([face.observation(each) for each in array]), False
        agents = f"{shape} or a batch (N, {', '.join(map(str, shape))})"
        own = f"the env's {raw} or one of " if face.obs_wrappers else ""
        got = f"shape {array.shape}" if array is not None and array.dtype != object else f"a {type(obs).__name__}"
        raise UserError(f"predict needs an observation of {own}shape {agents}, got {got}")

    @property
    def face(self) -> EnvFace:
        """The env's own spaces and the observation wrappers between them and the agent (one env, made once)."""
        if self._face is None:
            self._face = env_face(env_maker(self.settings, run_wrappers(self.settings, self.wrappers))(
                self.settings.env, 1, training=False, sticky_actions=self.settings.sticky_actions))
        return self._face

    def _in_env_units(self, actions: np.ndarray) -> np.ndarray:
        """Agents act in [-1, 1] for bounded Box actions (make_env rescales them to the env's bounds): map them
        back as the env would, and clip to its bounds. Discrete choices count from 0: add the env's start."""
        space = self.face.action_space
        if starts_elsewhere(space):
            return (np.asarray(actions) + space.start).astype(space.dtype)
        if not isinstance(space, gym.spaces.Box):
            return actions
        actions = np.asarray(actions).reshape(len(actions), *space.shape)  # a matrix or scalar Box: chosen flat
        if not (np.isfinite(space.low).all() and np.isfinite(space.high).all()):
            return actions
        scaled = space.low + (np.asarray(actions, dtype=np.float64) + 1.0) * 0.5 * (space.high - space.low)
        return np.clip(scaled, space.low, space.high).astype(space.dtype)

    def evaluate(self, episodes: int = 10, seed: int | None = None, deterministic: bool = True) -> list[float]:
        """Raw returns of ``episodes`` whole games, played as evaluate.py plays them (never the training games)."""
        if not isinstance(episodes, (int, np.integer)) or isinstance(episodes, bool) or episodes < 1:
            raise UserError(f"evaluate needs a whole number of episodes of at least 1, got {episodes!r}")
        seed = self.settings.seed + EVAL_SEED_OFFSET if seed is None else seed
        return evaluate_agent(self.agent, self.settings.env, episodes, seed, self.settings.sticky_actions,
                              deterministic=deterministic, env_kwargs=self.settings.env_kwargs,
                              wrappers=run_wrappers(self.settings, self.wrappers),
                              partially_observed=self.settings.partially_observed)


@dataclasses.dataclass
class EnvFace:
    """What a user's own env shows, beside what :func:`rlkit.envs.make_env` shows the agent."""

    action_space: gym.Space
    """The env's own, before make_env normalized bounded Box actions to [-1, 1] and counted discrete ones from 0."""
    obs_space: gym.Space
    """The env's own, before any observation wrapper (the user's, then rlkit's: one-hot codes, channels first)."""
    obs_wrappers: list[gym.ObservationWrapper]
    """Innermost first: what one of the env's observations goes through to reach the agent."""

    def observation(self, obs: Any) -> np.ndarray:
        space = self.obs_space
        if isinstance(space, gym.spaces.Box):
            obs = np.asarray(obs, dtype=space.dtype)  # a float64 array for a float32 Box, as envs often give
        elif isinstance(space, (gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)) and not (
                space.contains(obs)):  # a state out of range: one-hot coding would fail, or wrap a negative one
            raise UserError(f"predict got an observation outside the env's {space}: {obs!r:.80}")
        try:
            for wrapper in self.obs_wrappers:
                obs = wrapper.observation(obs)
        except (KeyError, TypeError, ValueError, IndexError) as error:  # a Dict missing a key, a part of a wrong type
            raise UserError(f"predict got an observation the env's {space} does not hold ({error!r:.80})") from None
        return np.asarray(obs)


def env_face(env: gym.vector.VectorEnv) -> EnvFace:
    """The :class:`EnvFace` of a vector env made by make_env (closes ``env``; the wrappers' ``observation`` methods
    keep working). Atari's native vector env has no sub-envs: its frames are what the agent reads."""
    inner: Any = env
    while isinstance(getattr(inner, "env", None), gym.vector.VectorEnv):
        inner = inner.env
    action_space, obs_space = inner.single_action_space, inner.single_observation_space
    first = (getattr(inner, "envs", None) or [None])[0]
    chain: list[gym.ObservationWrapper] = []
    layer = first
    while isinstance(layer, gym.Wrapper):
        if isinstance(layer, gym.ObservationWrapper):
            chain.append(layer)
        if isinstance(layer, OWN_ACTION_WRAPPERS):
            action_space = layer.env.action_space
        layer = layer.env
    if chain:
        obs_space = chain[-1].env.observation_space
    env.close()
    return EnvFace(action_space, obs_space, chain[::-1])
