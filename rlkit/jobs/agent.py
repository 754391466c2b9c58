"""Reinforcement-learning runs (``--agent NAME --env ENV``): the agent, its source and the loop; the agent rebuilt
from a checkpoint; its policy evaluated on raw game scores."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlkit.agents import AGENTS, Agent, get_agent_spec
from rlkit.buffers.rollout import auto_sequence_length
from rlkit.config import (COUNT, NON_NEGATIVE, apply_flags, read_only_with, refuse_unread_flags, require_all,
                          whole_number)
from rlkit.distributed import check_allreduce, init_actor_rpc, init_distributed, is_main, launched_by_torchrun
from rlkit.envs import EpisodeSignals, Wrapper, make_env, parse_env_kwargs, resolve_env
from rlkit.envs.atari import FRAME_SKIP, MAX_FRAMES_PER_GAME, NOOP_MAX
from rlkit.envs.custom import check_env_kwargs, resolve_wrapper
from rlkit.envs.names import ResolvedEnv
from rlkit.errors import UserError
from rlkit.hyperparams import Layer, Resolved, budgeted, layers_for, preset_names, protocol, resolve
from rlkit.jobs.base import Job, load_learner, warn_non_finite_weights
from rlkit.loop import Loop, LoopConfig
from rlkit.runtime import (available_memory, check_run_dir, cpu_count, format_bytes, pick_device, prepare_process,
                           seed_everything)
from rlkit.sources import make_rl_source, replay_frame_stack
from rlkit.sources.actors import Actor, ActorReplaySource, actor_name, serve
from rlkit.video import add_video_gif, check_video_path

REPLAY_FILE = "replay.npz"
VIDEO_DIR = "videos"
"""Inside the run directory: ``step_<N>.mp4``, one evaluation game per evaluation with ``--capture-video``."""
EVAL_SEED_OFFSET = 10_000
"""Evaluations during training play games seeded ``seed + 10_000``: never the training games."""
ENVS_PER_CORE = 256
"""More sub-envs (times workers) than this per core is refused: one process steps them all in turn, and 100 000
CartPoles took minutes just to build."""
WORKERS_PER_CORE = 4
"""A3C worker processes beyond this many per core only thrash."""


OVERLAPS = ("off", "on")


@dataclass
class AgentSettings:
    """What a training run needs beyond the agent's config."""

    agent: str
    env: str
    total_steps: int
    seed: int = 1
    num_envs: int = 1
    device: str = "auto"
    sticky_actions: bool = False
    eval_interval: int = 0
    eval_episodes: int = 10
    checkpoint_interval: int = 0
    save_buffer: bool = False
    progress: bool = True
    threads: int = 0
    """Torch threads; 0: auto (see :func:`rlkit.runtime.set_threads`)."""
    precision: str = "fp32"
    """What the updates compute in (:data:`rlkit.runtime.PRECISIONS`, ``--precision``)."""
    schedule_steps: int = 0
    """The budget the schedules (epsilon, learning-rate annealing, PER beta) stretch over: the first run's
    ``total_steps``, kept when a resume extends the run (``--stretch-schedules`` re-stretches them). 0: total_steps
    (runs saved before this field)."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the env's constructor (JSON values), used by every env of the run and by evaluate.py."""
    env_wrappers: list[str | dict[str, dict[str, Any]]] = field(default_factory=list)
    """Wrappers by import name (``gymnasium.wrappers:FlattenObservation``), or as rl-zoo's ``{name: {keyword:
    value}}`` for one that takes arguments, applied in order to every env of the run and by evaluate.py, before the
    Python API's ``wrappers`` (:func:`run_wrappers`)."""
    capture_video: bool = False
    """Record one evaluation game per evaluation into ``videos/step_<N>.mp4`` and TensorBoard."""
    preset: str = ""
    """A protocol preset (``--preset atari100k``, ``rlkit/hyperparams/presets/``) layered over the agent's
    defaults; "" for none."""
    partially_observed: bool = False
    """Every env of the run hides its velocities (Atari: one frame instead of a stack), :func:`make_env`'s
    ``partially_observed``."""
    allreduce: str = "builtin"
    """Under torchrun: how the processes sum gradients, metrics and observation statistics, builtin or ring
    (:data:`rlkit.distributed.ALLREDUCES`); a single process ignores it."""
    overlap: str = "off"
    """``on``: a thread plays the env steps between updates during the update before them, with weights one update
    old (:mod:`rlkit.sources.overlap`); ``off``: one after the other, reproducible bit for bit."""
    actor_chunk_steps: int = 50
    """Under torchrun, a replay learner's actors send their transitions every this many vector steps (Ape-X's
    local buffer of 50)."""
    actor_sync_updates: int = 100
    """Under torchrun, a replay learner sends its actors new weights every this many updates."""

    def __post_init__(self) -> None:
        self.schedule_steps = self.schedule_steps or self.total_steps
        self.env_kwargs = check_env_kwargs(self.env_kwargs)
        if not isinstance(self.env_wrappers, (list, tuple)):
            raise UserError(f"env_wrappers must be a list of import names, got {self.env_wrappers!r:.80}")
        self.env_wrappers = list(self.env_wrappers)
        for entry in self.env_wrappers:
            resolve_wrapper(entry)  # a name that does not import is refused before anything runs
        check_allreduce(self.allreduce)
        if self.overlap not in OVERLAPS:
            raise UserError(f"unknown --overlap {self.overlap!r}: use one of {', '.join(OVERLAPS)}")
        require_all((flag, value, COUNT) for flag, value in (
            ("--actor-chunk-steps", self.actor_chunk_steps), ("--actor-sync-updates", self.actor_sync_updates)))


def run_wrappers(settings: AgentSettings, wrappers: Sequence[Wrapper] = ()) -> tuple[Wrapper, ...]:
    """Every wrapper of the run's envs: the saved ``--env-wrapper`` names, then ``wrappers`` (the Python API's)."""
    return (*(resolve_wrapper(name) for name in settings.env_wrappers), *wrappers)


def env_maker(settings: AgentSettings, wrappers: Sequence[Wrapper] = ()) -> Callable[..., EpisodeSignals]:
    """:func:`make_env` with the run's env kwargs and ``wrappers`` (those are not saved: pass them again to rebuild
    the run in Python). Picklable when the wrappers are (A3C's workers get it)."""
    return functools.partial(make_env, env_kwargs=settings.env_kwargs, wrappers=tuple(wrappers),
                             partially_observed=settings.partially_observed)


def build_agent(settings: AgentSettings, config: Any, obs_space, action_space, device) -> Agent:
    agent_class = get_agent_spec(settings.agent).agent_class
    agent_class.check_spaces(obs_space, action_space, name=settings.agent)  # first, to name the agent as the user did
    return agent_class(config, obs_space, action_space, device=device, total_steps=settings.schedule_steps,
                       seed=settings.seed)


def steps_per_turn(settings: AgentSettings, config: Any) -> int:
    """What one turn of the agent's source adds to the step count: a rollout, or one step of every sub-env."""
    if get_agent_spec(settings.agent).agent_class.source_kind == "rollout":
        return config.num_steps * settings.num_envs
    return settings.num_envs


def default_eval_interval(settings: AgentSettings, config: Any) -> int:
    """A tenth of the budget, at least one turn of the source; 0 (only the final evaluation) for a run too short to
    evaluate twice before its end (a 512-step Atari PPO try is two rollouts: one evaluation, not three)."""
    interval = max(settings.total_steps // 10, steps_per_turn(settings, config))
    return 0 if 2 * interval >= settings.total_steps else interval


def check_run(settings: AgentSettings, config: Any, memory: bool = True, wrappers: Sequence[Wrapper] = ()) -> None:
    """Refuse, before any env or net is built for training, a run that cannot learn or cannot fit: no update
    within the budget, more envs or workers than the machine can step, replay or rollout storage larger than the
    free RAM. Warn of a budget the last vector step overshoots and of an evaluation interval beyond the run."""
    kind = get_agent_spec(settings.agent).agent_class.source_kind
    total, num_envs = settings.total_steps, settings.num_envs
    workers = getattr(config, "num_workers", 1)
    cores = cpu_count()
    if workers > WORKERS_PER_CORE * cores:
        raise UserError(f"--num-workers {workers} is far above the {cores} cores of this machine (at most "
                        f"{WORKERS_PER_CORE * cores}): use about one worker per core")
    if num_envs * workers > ENVS_PER_CORE * cores:
        raise UserError(f"--num-envs {num_envs}{f' x {workers} workers' if workers > 1 else ''} is far above what "
                        f"{cores} cores can step (at most {ENVS_PER_CORE * cores} envs): use fewer --num-envs")
    if kind == "replay" and config.learning_starts >= total:
        raise UserError(f"--learning-starts {config.learning_starts} is not below --total-steps {total}: no update "
                        "would ever happen; lower --learning-starts or raise --total-steps")
    check_minibatches(config, num_envs)
    chunk = steps_per_turn(settings, config)  # the run ends at the first multiple of it past the total
    warnings = []
    if kind == "rollout" and chunk > total:
        warnings.append(f"a rollout (--num-steps {config.num_steps} x --num-envs {num_envs} = {chunk} steps) is longer "
                        f"than --total-steps {total}: the run takes one rollout, {chunk} steps, and updates once")
    elif total % chunk:
        what = "rollouts" if kind == "rollout" else f"vector steps of {num_envs} envs"
        warnings.append(f"--total-steps {total} is not a whole number of {what}: the run takes "
                        f"{math.ceil(total / chunk) * chunk} steps")
    if settings.capture_video and settings.eval_episodes == 0:
        raise UserError("--capture-video records a game at each evaluation but --eval-episodes 0 turns them off: "
                        "drop one of them")
    if settings.eval_episodes > 0 and settings.eval_interval > total:
        warnings.append(f"--eval-interval {settings.eval_interval} is beyond the run's {total} steps: only the final "
                        "evaluation will run")
    if is_main():
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
    if memory:
        check_memory(settings, config, kind, wrappers)


def check_minibatches(config: Any, num_envs: int) -> None:
    """Refuse more minibatches than a rollout has samples (a recurrent policy's: sequences): the update would
    have cut it into minibatches of one, as many as there are samples, not the number asked for."""
    minibatches = getattr(config, "num_minibatches", None)
    if minibatches is None:
        return
    recurrent = getattr(config, "recurrent", "none") != "none"
    if recurrent:
        length = config.sequence_length or auto_sequence_length(config.num_steps, num_envs, minibatches)
        units, what = num_envs * (config.num_steps // length), f"sequences of {length} step{'s' * (length > 1)}"
    else:
        units, what = num_envs * config.num_steps, "samples"
    if minibatches > units:
        raise UserError(f"--num-minibatches {minibatches} is more than the {units} {what} of a rollout "
                        f"(--num-steps {config.num_steps} x --num-envs {num_envs}): use at most {units}, or collect "
                        "more per rollout")


def check_memory(settings: AgentSettings, config: Any, kind: str, wrappers: Sequence[Wrapper] = ()) -> None:
    """Refuse replay or rollout storage that cannot fit in the free RAM, estimated from the env's spaces before
    anything is allocated."""
    if kind == "async" or (kind == "replay" and not hasattr(config, "buffer_size")):
        return  # each worker keeps a segment of num_steps rows, a table's queue the steps since an update: small
    env = env_maker(settings, wrappers)(settings.env, 1, training=False, sticky_actions=settings.sticky_actions)
    obs_space, action_space, family = env.single_observation_space, env.single_action_space, env.resolved.family
    env.close()
    obs_shape, obs_bytes = obs_space.shape, np.dtype(obs_space.dtype).itemsize
    # as the agents store actions: float32 vectors, uint8 indices for up to 256 discrete actions
    action_bytes = (4 * int(np.prod(action_space.shape)) if action_space.shape else
                    1 if getattr(action_space, "n", 257) <= 256 else 8)
    if kind == "replay":
        frame_stack = obs_shape[0] if family == "atari" else 1  # Atari replay stores each stacked frame once
        if config.buffer_size // settings.num_envs < frame_stack + getattr(config, "n_step", 1) + 1:
            raise UserError(f"--buffer-size {config.buffer_size} is too small for {settings.num_envs} envs (each "
                            "env keeps its own ring of buffer-size / num-envs slots): raise --buffer-size")
        frame = obs_shape[1:] if frame_stack > 1 else obs_shape
        heads = config.num_heads if getattr(config, "bootstrapped", False) else 0
        tree = 32 if getattr(config, "prioritized", False) else 0  # the sum tree: two float64 nodes per slot, rounded up
        # frame, action, reward (4 bytes), four flags, the bootstrap masks and the sum tree
        row = int(np.prod(frame)) * obs_bytes + action_bytes + 4 + 4 + heads + tree
        needed, flag = config.buffer_size * row, f"--buffer-size {config.buffer_size}"
    else:
        if pick_device(settings.device).type != "cpu":
            return  # the rollout lives on the accelerator
        row = int(np.prod(obs_shape)) * 4 + action_bytes + 12 * 4  # at most: float32 observations, 12 float columns
        needed = config.num_steps * settings.num_envs * row
        flag = f"a rollout of --num-steps {config.num_steps} x --num-envs {settings.num_envs}"
    free = available_memory()
    if free is not None and needed > free:
        raise UserError(f"{flag} needs about {format_bytes(needed)} of memory but this machine has "
                        f"{format_bytes(free)} available: make it smaller")


ATARI_EVAL_EPSILON = 0.05
"""On Atari every agent's evaluation takes a uniformly random action with this probability (the DQN family's
``eval_epsilon`` convention): a deterministic policy that never presses FIRE would otherwise play every game to the
108k-frame cap. Agents whose config has its own ``eval_epsilon`` (the DQN family) use that instead."""
DEFAULT_EVAL_STEP_CAP = 108_000
"""Evaluation steps per game for an env that declares no time limit of its own."""


def evaluation_step_cap(resolved: ResolvedEnv) -> int:
    """The most steps an evaluation plays before it stops a game: the env's own limit (Atari's 108k frames, a
    gymnasium ``max_episode_steps``) with room for the no-op starts, or :data:`DEFAULT_EVAL_STEP_CAP` without one.
    The env normally ends its games first; the cap guarantees an evaluation ends whatever the env does."""
    if resolved.family == "atari":
        return MAX_FRAMES_PER_GAME // FRAME_SKIP + NOOP_MAX + 1
    try:
        limit = gym.spec(resolved.env_id).max_episode_steps
    except gym.error.Error:  # an env made outside the registry
        limit = None
    return limit + 1 if limit else DEFAULT_EVAL_STEP_CAP


def _cap_origin(cap: int, env_name: str) -> str:
    """Where the evaluation's step cap came from, for the line that says games reached it."""
    if cap == DEFAULT_EVAL_STEP_CAP:
        return f"{env_name} declares no time limit of its own: --env-kwargs max_episode_steps=N gives it one"
    return "the env's own limit"


def evaluation_epsilon(agent: Agent, resolved: ResolvedEnv) -> float:
    """The probability of a random action in evaluation: the agent's own ``eval_epsilon`` where its config has one,
    else :data:`ATARI_EVAL_EPSILON` on Atari and 0 elsewhere."""
    own = getattr(agent.config, "eval_epsilon", None)
    if own is not None:
        return 0.0  # the agent's act() applies it itself
    return ATARI_EVAL_EPSILON if resolved.family == "atari" else 0.0


def evaluate_agent(agent: Agent, env_name: str, episodes: int, seed: int, sticky_actions: bool = False,
                   video: str | Path | None = None, max_envs: int = 16, deterministic: bool = True,
                   env_kwargs: dict[str, Any] | None = None, wrappers: Sequence[Wrapper] = (),
                   partially_observed: bool = False) -> list[float]:
    """Raw returns of ``episodes`` whole games played by ``agent.act(obs, explore=False, deterministic)``.

    Up to ``max_envs`` games run at once, one per sub-env; a sub-env whose game ends starts the next game until
    ``episodes`` have started, and every game started is counted (so short games are not over-counted). A long game
    therefore holds up only its own sub-env, not a batch of finished ones. Random draws come from generators seeded
    by ``seed`` alone, so evaluating never changes training. With ``video``, one game is played alone and recorded
    to that file. On Atari a random action replaces the policy's with probability :func:`evaluation_epsilon`.
    Evaluation always ends: a game still running after :func:`evaluation_step_cap` steps counts with its return so
    far (said on stderr), and a NaN return is reported as NaN. ``env_kwargs`` and ``wrappers`` and
    ``partially_observed`` go to every :func:`make_env` (those the agent was trained with).
    """
    agent.seed_evaluation(seed)
    resolved = resolve_env(env_name)
    env_kwargs = check_env_kwargs(env_kwargs)
    cap, epsilon = evaluation_step_cap(resolved), evaluation_epsilon(agent, resolved)
    if env_kwargs.get("max_episode_steps"):  # gym.make's own time limit, given as an env kwarg
        cap = max(cap, int(env_kwargs["max_episode_steps"]) + 1)
    rng = np.random.default_rng(seed)  # the random actions' own generator: the agent's draws stay as they were
    with torch.random.fork_rng(devices=[agent.device] if agent.device.type == "cuda" else []):
        torch.manual_seed(seed)
        if video is not None:
            return [_record_episode(agent, env_name, seed, sticky_actions, Path(video), deterministic, cap,
                                    epsilon, rng, env_kwargs, wrappers, partially_observed)]
        returns: list[float] = []
        capped = 0
        while len(returns) < episodes:  # once, unless games past the cap left sub-envs that cannot start another
            n = min(max_envs, episodes - len(returns))
            env = make_env(env_name, n, seed=seed + len(returns), training=False, sticky_actions=sticky_actions,
                           env_kwargs=env_kwargs, wrappers=wrappers, partially_observed=partially_observed)
            played, unfinished = _play_games(agent, env, episodes - len(returns), cap, epsilon, rng, deterministic)
            env.close()
            returns.extend(played)
            capped += unfinished
        if capped:
            print(f"evaluation: {capped} of {episodes} games of {env_name} still running after {cap} steps "
                  f"({_cap_origin(cap, env_name)}) count with their return so far", file=sys.stderr)
        return returns


def _play_games(agent: Agent, env: EpisodeSignals, games: int, cap: int, epsilon: float, rng: np.random.Generator,
                deterministic: bool) -> tuple[list[float], int]:
    """Plays up to ``games`` games on ``env``'s sub-envs, each sub-env going on to the next game (its own autoreset)
    while games remain to start; a sub-env with none left, or whose game reached ``cap`` steps, idles. Returns
    the games' raw returns in the order they started (sub-env order for the first ones) and how many were cut at
    the cap."""
    n = env.num_envs
    obs, _ = env.reset()
    _new_episodes(agent, np.ones(n, dtype=bool))
    game = np.arange(n)  # the game each sub-env plays; -1: none that counts
    steps, running = np.zeros(n, dtype=np.int64), np.zeros(n)
    started, returns, capped = n, {}, 0
    while (game >= 0).any():  # a done mask, not a NaN sentinel: a NaN return is a finished game too
        actions = _with_random_actions(agent.act(obs, explore=False, deterministic=deterministic),
                                       env.single_action_space, epsilon, rng)
        obs, rewards, terminated, truncated, info = env.step(actions)
        _new_episodes(agent, terminated | truncated)  # the vector env reset those games
        playing = game >= 0
        steps += playing
        running += np.where(playing, rewards, 0.0)
        for i in np.flatnonzero(playing & (info["episode_done"] | (steps >= cap))):
            ended = bool(info["episode_done"][i])
            returns[int(game[i])] = float(info["episode_return"][i]) if ended else float(running[i])
            capped += not ended
            if ended and started < games:  # the autoreset game is the next one counted
                game[i], started, steps[i], running[i] = started, started + 1, 0, 0.0
            else:
                game[i] = -1
    return [returns[g] for g in sorted(returns)], capped


def _new_episodes(agent: Agent, mask: np.ndarray) -> None:
    """:meth:`Agent.new_episodes`, where the agent has it (a scripted policy with ``act`` alone need not)."""
    forget = getattr(agent, "new_episodes", None)
    if forget is not None:
        forget(mask)


def _with_random_actions(actions: np.ndarray, space: gym.Space, epsilon: float, rng: np.random.Generator
                         ) -> np.ndarray:
    """``actions`` with each replaced by a uniform random one with probability ``epsilon`` (Discrete spaces)."""
    if epsilon <= 0 or not isinstance(space, gym.spaces.Discrete):
        return actions
    random = rng.random(len(actions)) < epsilon
    if random.any():
        actions = np.array(actions, copy=True)
        actions[random] = space.start + rng.integers(space.n, size=int(random.sum()))
    return actions


class _RenderEachStep(gym.Wrapper):
    """Renders after every reset and step of one sub-env into ``frames``: inside the vector env, so a game's last
    frame is taken before the vector env's autoreset replaces it with the next game's first."""

    def __init__(self, env: gym.Env, frames: list[np.ndarray]):
        super().__init__(env)
        self.frames = frames

    def reset(self, **kwargs: Any):
        result = self.env.reset(**kwargs)
        self.frames.append(self.env.render())
        return result

    def step(self, action: Any):
        result = self.env.step(action)
        self.frames.append(self.env.render())
        return result


def _record_episode(agent: Agent, env_name: str, seed: int, sticky_actions: bool, path: Path,
                    deterministic: bool, cap: int, epsilon: float, rng: np.random.Generator,
                    env_kwargs: dict[str, Any], wrappers: Sequence[Wrapper], partially_observed: bool = False
                    ) -> float:
    """Play one game and write its frames to ``path``: the first observation's and one per step, the last
    included (a game of L steps gives L + 1 frames)."""
    from rlkit.video import VideoWriter

    frames: list[np.ndarray] = []
    env = make_env(env_name, 1, seed=seed, training=False, sticky_actions=sticky_actions, render=True,
                   env_kwargs=env_kwargs, wrappers=(*wrappers, lambda sub_env: _RenderEachStep(sub_env, frames)),
                   partially_observed=partially_observed)
    obs, _ = env.reset()
    _new_episodes(agent, np.ones(1, dtype=bool))
    first, running = _frame(frames.pop(0), env_name), 0.0
    with VideoWriter(path, fps=env.metadata.get("render_fps") or 30) as writer:
        writer.write(first)
        for _ in range(cap):
            actions = _with_random_actions(agent.act(obs, explore=False, deterministic=deterministic),
                                           env.single_action_space, epsilon, rng)
            obs, rewards, _, _, info = env.step(actions)
            running += float(rewards[0])
            writer.write(_frame(frames[0], env_name))  # after a game over frames[1] is the next game's start
            frames.clear()
            if info["episode_done"][0]:
                env.close()
                return float(info["episode_return"][0])
    env.close()
    print(f"evaluation: the recorded game of {env_name} was still running after {cap} steps "
          f"({_cap_origin(cap, env_name)}): it counts with its return so far", file=sys.stderr)
    return running


def _frame(frame: Any, env_name: str) -> np.ndarray:
    """An (H, W, 3) RGB frame from ``render()``, or a one-line error for an env that renders none."""
    frame = np.asarray(frame) if frame is not None else None
    if frame is None or frame.ndim != 3 or frame.shape[-1] != 3:
        raise UserError(f"{env_name} renders no RGB frames (its render() in 'rgb_array' mode gave "
                        f"{None if frame is None else frame.shape}): videos need an env whose metadata lists "
                        "'rgb_array' in render_modes; drop --capture-video / --video")
    return frame


class EnvWrapperAction(argparse.Action):
    """``--env-wrapper NAME [KEY=VALUE ...]``, repeatable -> the list of entries :class:`AgentSettings` keeps: the
    name alone, or ``{name: {key: value}}`` (rl-zoo's form) when arguments follow it."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        name, *pairs = values
        entry = {name: parse_env_kwargs(pairs, flag=f"--env-wrapper {name}")} if pairs else name
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest) or []), entry])


class EnvKwargsAction(argparse.Action):
    """``--env-kwargs k=v ...`` -> a dict (:func:`rlkit.envs.parse_env_kwargs`)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, parse_env_kwargs(values))


def check_renders(env_name: str, env_kwargs: dict[str, Any] | None = None, wrappers: Sequence[Wrapper] = ()) -> None:
    """Refuse, in one line, an env that gives no RGB frames to record."""
    env = make_env(env_name, 1, training=False, render=True, env_kwargs=env_kwargs, wrappers=wrappers)
    try:
        env.reset(seed=0)
        _frame(env.render()[0], env_name)
    finally:
        env.close()


def check_flags_apply(settings: AgentSettings, agent: Agent, with_actors: bool) -> None:
    """Refuse a run flag that this run would accept and ignore (a flag that does nothing is a defect, not a
    setting): --save-buffer without a replay, the actor flags without actors fed by torchrun."""
    if settings.save_buffer and agent.source_kind != "replay":
        raise UserError(f"--save-buffer saves the replay of the DQN family, DDPG, TD3 and SAC; {settings.agent} keeps "
                        "none: drop --save-buffer")
    defaults = {f.name: f.default for f in dataclasses.fields(AgentSettings)}
    for name in ("actor_chunk_steps", "actor_sync_updates"):
        if getattr(settings, name) != defaults[name] and not with_actors:
            raise UserError(f"--{name.replace('_', '-')} tunes the actors that feed one learner under torchrun "
                            f"(torchrun --nproc-per-node N train.py --agent dqn ...); this run of {settings.agent} "
                            "has none: drop it")


class AgentJob(Job):
    kind = "agent"
    best_metric = "eval/mean_return"
    settings_class = AgentSettings
    resume_overrides = ("total_steps", "eval_interval", "checkpoint_interval", "capture_video")
    eval_interval_default = ("a tenth of --total-steps, at least one rollout; only the final evaluation for a run "
                             "too short to evaluate twice before its end")

    def add_flags(self, parser: argparse.ArgumentParser, run: argparse._ArgumentGroup) -> None:
        parser.epilog = "agents: " + "; ".join(f"{name}: {spec.help}" for name, spec in AGENTS.items())
        run.add_argument("--agent", help=f"algorithm: {', '.join(AGENTS)}")
        run.add_argument("--env", help="short name (Breakout, CartPole, HalfCheetah), a gymnasium id, or "
                                       "module:EnvId for an env registered by your own module")
        run.add_argument("--total-steps", type=whole_number,
                         help="env steps to train for (default: the agent's preset for the env's family)")
        run.add_argument("--num-envs", type=whole_number,
                         help="sub-environments stepped together (default: the agent's preset, e.g. 8 for PPO on Atari)")
        run.add_argument("--overlap", choices=OVERLAPS,
                         help="DQN family, DDPG, TD3, SAC: 'on' plays the env steps between two updates in a thread "
                              "during the first of them, acting with weights one update old (faster on 2+ cores; "
                              "not bit-for-bit reproducible; may end a few steps past --total-steps); 'off' is "
                              "exact. Kept by --resume unless given (default: off)")
        run.add_argument("--actor-chunk-steps", type=whole_number,
                         help="under torchrun, DQN-family, DDPG, TD3 and SAC runs are one learner (process 0) fed by "
                              "actors (the other processes): each actor sends its transitions every this many "
                              "vector steps (default: 50)")
        run.add_argument("--actor-sync-updates", type=whole_number,
                         help="under torchrun, the learner sends its actors new weights every this many updates "
                              "(default: 100)")
        run.add_argument("--sticky-actions", action="store_true", default=None,
                         help="Atari: repeat the previous action with probability 0.25 (Machado et al. 2018)")
        run.add_argument("--eval-episodes", type=whole_number,
                         help="games per evaluation; 0 disables (default: 10). On Atari every agent evaluates with "
                              f"a {ATARI_EVAL_EPSILON} chance of a random action per step (the DQN family: its "
                              "--eval-epsilon), so a policy that never presses FIRE cannot stall a game")
        run.add_argument("--stretch-schedules", action="store_true",
                         help="with --resume and a larger --total-steps: stretch epsilon, learning-rate annealing and "
                              "PER beta over the new budget (default: they keep the first run's)")
        run.add_argument("--env-kwargs", nargs="+", action=EnvKwargsAction, metavar="KEY=VALUE",
                         help="keyword arguments of the env's constructor, each value read as JSON or as Python's "
                              "True, False, None (else a string): --env-kwargs gravity=-5.0 is_slippery=False; saved "
                              "with the run, so evaluate.py rebuilds the same env")
        run.add_argument("--env-wrapper", nargs="+", action=EnvWrapperAction, dest="env_wrappers",
                         metavar=("MODULE:NAME", "KEY=VALUE"),
                         help="wrap every env of the run (repeat for several, applied in order): a gym.Wrapper class "
                              "or a function env -> env by import name, then its keyword arguments read as "
                              "--env-kwargs reads them, e.g. gymnasium.wrappers:FlattenObservation for a Dict "
                              "observation space or gymnasium.wrappers:TimeLimit max_episode_steps=200; saved with "
                              "the run, so evaluate.py wraps its env too")
        run.add_argument("--capture-video", action="store_true", default=None,
                         help=f"record one evaluation game per evaluation into RUN_DIR/{VIDEO_DIR}/step_N.mp4 and "
                              "TensorBoard's IMAGES tab (an animated GIF)")
        run.add_argument("--preset", choices=preset_names(),
                         help="a benchmark protocol's settings and its published agents' values over the agent's "
                              "defaults (atari100k: 100k steps, DER for --agent rainbow, DrQ(eps) for --agent "
                              "dueling-dqn; see rlkit/hyperparams/presets/); --config files and flags override it")
        run.add_argument("--partially-observed", action="store_true", default=None,
                         help="hide what makes the env Markov, for recurrent policies (--recurrent lstm): classic "
                              "control and Box2D envs get their velocity entries zeroed, Atari one frame instead of "
                              "a stack of 4; saved with the run, so evaluate.py plays the same env")
        run.add_argument("--save-buffer", action="store_true", default=None,
                         help="also save replay at each checkpoint (large: ~7 kB per Atari transition) so a resume "
                              "continues with it")

    def config_class(self, names: dict[str, Any]) -> type:
        return get_agent_spec(names["agent"]).agent_class.config_class

    def preset(self, names: dict[str, Any]) -> Any | None:
        if not names.get("env"):
            return None
        return self.hyperparams(names).config

    def hyperparams(self, names: dict[str, Any]) -> Resolved:
        """The config and run defaults (``total_steps``, ``num_envs``) for ``names["agent"]`` on ``names["env"]``:
        the family preset, the shipped file's values for the env, then each of ``names["config_files"]``."""
        spec = get_agent_spec(names["agent"])
        resolved = resolve_env(names["env"])
        config = spec.preset(resolved.family)
        known = [f.name for f in dataclasses.fields(config) if f.init]
        preset = protocol(names["preset"], spec.name, resolved.family, known) if names.get("preset") else None
        layers = layers_for(spec.hyperparams_file, resolved.env_id, names.get("config_files") or (), known,
                            Layer(f"--agent {spec.name}", dict(spec.variant)), preset.layers if preset else ())
        chosen = resolve(config, spec.run_defaults(resolved.family)._asdict(), f"preset:{resolved.family}", layers)
        if preset is not None:  # how the protocol evaluates: run settings beside total_steps and num_envs
            chosen.run.update(preset.run)
            chosen.sources.update({key: preset.layers[0].label for key in preset.run})
        defaults = [chosen.labels[0], *(layer.label for layer in layers
                                        if layer.label.startswith(("hyperparams/", "--preset")))]
        return budgeted(chosen, layers, names.get("total_steps") or chosen.run["total_steps"], defaults)

    def base_config(self, names: dict[str, Any]) -> Any:
        """The agent's defaults with its name's variant (td3: twin critics) before any env family's preset."""
        spec = get_agent_spec(names["agent"])
        return spec.agent_class.config_class(**spec.variant)

    def new_settings(self, args: argparse.Namespace, wrappers: Sequence[Wrapper] = ()) -> AgentSettings:
        """``wrappers``: the Python API's, for the checks that build an env."""
        if getattr(args, "distributed", None) not in (None, "ddp"):
            raise UserError(f"--distributed {args.distributed} trains classifiers only; agents run under torchrun "
                            "as they are (data-parallel, or one learner fed by actors): drop --distributed")
        if args.stretch_schedules:
            raise UserError("--stretch-schedules re-stretches a resumed run's schedules: use it with --resume")
        if args.agent is None or args.env is None:
            raise UserError("--agent and --env are required (or --resume RUN_DIR): e.g. --agent dqn --env CartPole")
        # Given counts are checked before defaults fill the rest: 0 is refused, never read as "the default".
        require_all((flag, value, bound) for flag, value, bound in (
            ("--total-steps", args.total_steps, COUNT), ("--num-envs", args.num_envs, COUNT),
            ("--seed", args.seed, NON_NEGATIVE), ("--eval-interval", args.eval_interval, NON_NEGATIVE),
            ("--eval-episodes", args.eval_episodes, NON_NEGATIVE),
            ("--checkpoint-interval", args.checkpoint_interval, NON_NEGATIVE),
            ("--threads", args.threads, NON_NEGATIVE)) if value is not None)
        pick_device(args.device or "auto")
        check_run_dir(args.run_dir)
        names = {"agent": args.agent, "env": args.env, "config_files": args.config_file or (),
                 "preset": args.preset or ""}
        chosen = self.hyperparams(names)
        defaults = chosen.run
        total = defaults["total_steps"] if args.total_steps is None else args.total_steps
        settings = AgentSettings(
            agent=args.agent, env=args.env, total_steps=total, seed=1 if args.seed is None else args.seed,
            num_envs=defaults["num_envs"] if args.num_envs is None else args.num_envs, device=args.device or "auto",
            sticky_actions=bool(args.sticky_actions),
            eval_interval=args.eval_interval or defaults.get("eval_interval", 0),  # else the default: below
            eval_episodes=defaults.get("eval_episodes", 10) if args.eval_episodes is None else args.eval_episodes,
            checkpoint_interval=(args.checkpoint_interval if args.checkpoint_interval is not None
                                 else min(max(total // 20, 1_000), 100_000)),
            save_buffer=bool(args.save_buffer), progress=not args.no_progress, threads=args.threads or 0,
            precision=args.precision or "fp32",
            env_kwargs=args.env_kwargs or {}, env_wrappers=args.env_wrappers or [],
            capture_video=bool(args.capture_video), preset=args.preset or "",
            partially_observed=bool(args.partially_observed),
            allreduce=args.allreduce or "builtin",
            **{name: getattr(args, name) for name in ("overlap", "actor_chunk_steps", "actor_sync_updates")
               if getattr(args, name) is not None},
        )
        # again with the run's budget, which fits the preset's warm-up to it
        chosen = self.hyperparams({**names, "total_steps": total})
        config = apply_flags(chosen.config, args)
        refuse_unread_flags(args, read_only_with(type(config)), lambda field: getattr(config, field))
        if args.eval_interval is None and "eval_interval" not in defaults:
            settings.eval_interval = default_eval_interval(settings, config)
        # --print-config allocates nothing, so it builds no env to size the storage either
        check_run(settings, config, memory=not getattr(args, "print_config", False),
                  wrappers=run_wrappers(settings, wrappers))
        return settings

    def resume(self, settings: AgentSettings, args: argparse.Namespace, steps_taken: int) -> None:
        if settings.total_steps < steps_taken:
            raise UserError(f"--total-steps {settings.total_steps} is below the {steps_taken} steps the run has "
                            f"taken: pass a larger budget to extend it")
        if args.stretch_schedules:
            settings.schedule_steps = settings.total_steps

    def run_name(self, settings: AgentSettings) -> str:
        return f"{settings.env.replace(':', '-')}__{settings.agent}__{settings.seed}"  # module:EnvId

    def describe(self, settings: AgentSettings, loop: Loop) -> str:
        return f"{settings.agent} on {settings.env} for {settings.total_steps} steps"

    def build(self, settings: AgentSettings, config: Any, run_dir: Path, resume: dict[str, Any] | None = None,
              wrappers: Sequence[Wrapper] = ()) -> Loop:
        """``wrappers`` (Python only, not saved) are applied to every env of the run, after the saved
        ``--env-wrapper`` ones: training, evaluation, videos."""
        wrappers = run_wrappers(settings, wrappers)
        seed_everything(settings.seed)  # the same initial weights on every process under torchrun
        device = pick_device(settings.device)
        agent_class = get_agent_spec(settings.agent).agent_class
        with_actors = launched_by_torchrun() and agent_class.remote_actors
        if with_actors:
            if settings.allreduce != "builtin":
                raise UserError(f"--allreduce {settings.allreduce} sums the gradients of data-parallel runs; "
                                f"{settings.agent} under torchrun is one learner fed by actors, which sums nothing: "
                                "drop --allreduce")
            rank, world_size = init_actor_rpc(actor_name(int(os.environ["RANK"])))
        else:
            rank, world_size = init_distributed(device, settings.allreduce)
        if world_size > 1 and not (agent_class.data_parallel or with_actors):
            parallel = [name for name, spec in AGENTS.items()
                        if spec.agent_class.data_parallel or spec.agent_class.remote_actors]
            raise UserError(f"{settings.agent} learns in one process and cannot run under torchrun: run it without "
                            f"torchrun (agents that can: {', '.join(parallel)})")
        env_fn = env_maker(settings, wrappers)
        spaces = env_fn(settings.env, 1, training=False, sticky_actions=settings.sticky_actions)
        prepare_process(settings.threads, large_convolutions=False)  # even the Nature CNN: see set_threads
        agent = build_agent(settings, config, spaces.single_observation_space, spaces.single_action_space, device)
        env_id, frame_stack = spaces.resolved.env_id, replay_frame_stack(spaces)
        spaces.close()
        if settings.overlap == "on" and (with_actors or not agent_class.remote_actors):
            where = ("is one learner fed by actors under torchrun, which act apart already" if with_actors
                     else "learns from its own steps in turn")
            raise UserError(f"--overlap on plays env steps during updates of a replay learner (the DQN family, DDPG, "
                            f"TD3, SAC) in one process; {settings.agent} {where}: drop --overlap")
        check_flags_apply(settings, agent, with_actors)
        if with_actors and rank > 0:
            return self.build_actor(settings, agent, env_fn, frame_stack, rank, world_size, resume)
        if settings.capture_video and is_main():
            check_renders(settings.env, settings.env_kwargs, wrappers)  # before training, not at the first evaluation
        if with_actors:
            source = ActorReplaySource(agent, world_size - 1, settings.num_envs, frame_stack, settings.seed,
                                       settings.actor_sync_updates)
            serve(source)
        else:
            twin = (build_agent(settings, config, agent.obs_space, agent.action_space, device)
                    if settings.overlap == "on" else None)
            source = make_rl_source(agent, settings.env, settings.num_envs, settings.seed, settings.sticky_actions,
                                    settings.total_steps, rank, env_fn, twin=twin)

        def evaluate() -> dict[str, float]:
            seed = settings.seed + EVAL_SEED_OFFSET
            returns = evaluate_agent(agent, settings.env, settings.eval_episodes, seed, settings.sticky_actions,
                                     env_kwargs=settings.env_kwargs, wrappers=wrappers,
                                     partially_observed=settings.partially_observed)
            if settings.capture_video:
                # One more game (the first evaluation game's seed), played alone: evaluation's own generators, so
                # training is unchanged. The loop's TensorBoard writer exists once the loop runs.
                step, path = source.steps, run_dir / VIDEO_DIR / f"step_{source.steps}.mp4"
                evaluate_agent(agent, settings.env, 1, seed, settings.sticky_actions, video=path,
                               env_kwargs=settings.env_kwargs, wrappers=wrappers,
                                     partially_observed=settings.partially_observed)
                add_video_gif(loop.writer, "videos/evaluation", path, step)
            return {"eval/mean_return": float(np.mean(returns)), "eval/std_return": float(np.std(returns))}

        replay = settings.save_buffer and agent.source_kind == "replay"

        def save_replay(directory: Path) -> None:
            source.save_buffer(str(directory / REPLAY_FILE))

        loop = self.make_loop(
            agent, source, settings, config, run_dir,
            LoopConfig(settings.total_steps, settings.eval_interval, settings.checkpoint_interval,
                       progress=settings.progress),
            resume, evaluate if settings.eval_episodes > 0 else None, save_replay if replay else None, env_id=env_id,
        )
        if resume is not None:
            if (run_dir / REPLAY_FILE).exists() and agent.source_kind == "replay":
                source.load_buffer(str(run_dir / REPLAY_FILE))
            # The env's internal state is not in the checkpoint: start fresh games with a seed tied to the step.
            source.reset(seed=settings.seed + source.steps)
        return loop

    def build_actor(self, settings: AgentSettings, agent: Agent, env_fn: Callable[..., EpisodeSignals],
                    frame_stack: int, rank: int, world_size: int, resume: dict[str, Any] | None) -> Actor:
        """Process ``rank`` > 0 of a replay learner under torchrun: an actor with envs and random draws of its own
        (a resumed run's actors start new games, seeded by the step too); the learner sends it the weights."""
        steps = resume["loop"]["steps"] if resume is not None else 0
        seed = settings.seed + 100_000 * rank + steps
        agent.rng = np.random.default_rng(seed)
        env = env_fn(settings.env, settings.num_envs, seed=seed, sticky_actions=settings.sticky_actions)
        return Actor(agent, env, frame_stack, rank - 1, world_size - 1, settings.actor_chunk_steps, seed)

    def rebuild(self, checkpoint: dict[str, Any], device: str = "auto", wrappers: Sequence[Wrapper] = (),
                **overrides: Any) -> tuple[Agent, AgentSettings]:
        """The trained agent and its run settings (``wrappers``: those the run was trained with, if any)."""
        settings = self.settings_from(checkpoint)
        config = self.config_from(checkpoint, settings)
        env = env_maker(settings, run_wrappers(settings, wrappers))(settings.env, 1, training=False,
                                                                    sticky_actions=settings.sticky_actions)
        agent = build_agent(settings, config, env.single_observation_space, env.single_action_space,
                            pick_device(device))
        env.close()
        load_learner(agent, checkpoint)
        return agent, settings

    def add_report_flags(self, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("agents")
        group.add_argument("--episodes", type=whole_number, default=10,
                           help=f"games to play (default: 10); on Atari with a {ATARI_EVAL_EPSILON} chance of a "
                                "random action per step (the DQN family: its eval_epsilon), as in training's "
                                "evaluations")
        group.add_argument("--stochastic", action="store_true",
                           help="sample actions from the policy instead of taking its mode (mean or argmax)")
        group.add_argument("--video", type=Path, metavar="FILE.mp4",
                           help="also record one game to this file: an H.264 MP4, or an animated GIF if it ends "
                                "in .gif")

    def report(self, checkpoint: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
        if args.episodes < 1:
            raise UserError(f"--episodes must be at least 1, got {args.episodes}")
        if args.video is not None:
            check_video_path(args.video)  # before the games, not after them
        agent, settings = self.rebuild(checkpoint, args.device)
        warn_non_finite_weights(checkpoint)
        deterministic = not args.stochastic
        returns = evaluate_agent(agent, settings.env, args.episodes, args.seed, settings.sticky_actions,
                                 deterministic=deterministic, env_kwargs=settings.env_kwargs,
                                 wrappers=run_wrappers(settings), partially_observed=settings.partially_observed)
        result = {
            "agent": settings.agent, "env": settings.env, "steps": checkpoint["loop"]["steps"],
            "episodes": len(returns), "mean_return": float(np.mean(returns)), "std_return": float(np.std(returns)),
            "returns": returns,
        }
        if args.video is not None:
            result["video"] = str(args.video)
            result["video_return"] = evaluate_agent(agent, settings.env, 1, args.seed, settings.sticky_actions,
                                                    args.video, deterministic=deterministic,
                                                    env_kwargs=settings.env_kwargs, wrappers=run_wrappers(settings),
                                                    partially_observed=settings.partially_observed)[0]
        if args.json:
            print(json.dumps(result))
        else:
            episodes = f"{len(returns)} episode" + ("s" if len(returns) != 1 else "")
            print(f"{settings.agent} on {settings.env} after {result['steps']} steps: "
                  f"{result['mean_return']:.2f} ± {result['std_return']:.2f} over {episodes}")
            if args.video is not None:
                print(f"video of one game (return {result['video_return']:.1f}) written to {args.video}")
        return result
