"""Reinforcement-learning jobs: build the agent, source and loop from names and configs; rebuild them from a
checkpoint; evaluate a policy on raw game scores."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlkit.agents import AGENTS, Agent, get_agent_spec
from rlkit.config import config_from_dict, config_to_dict
from rlkit.envs import make_env
from rlkit.errors import UserError
from rlkit.loop import Loop, LoopConfig
from rlkit.distributed import init_distributed, is_main
from rlkit.runtime import pick_device, seed_everything
from rlkit.sources import ReplaySource, make_rl_source

REPLAY_FILE = "replay.npz"


@dataclass
class RunSettings:
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


def build_agent(name: str, config: Any, obs_space, action_space, device, total_steps: int, seed: int) -> Agent:
    spec = get_agent_spec(name)
    return spec.agent_class(config, obs_space, action_space, device=device, total_steps=total_steps, seed=seed)


def evaluate_agent(
    agent: Agent,
    env_name: str,
    episodes: int,
    seed: int,
    sticky_actions: bool = False,
    video: str | Path | None = None,
    max_envs: int = 16,
    deterministic: bool = True,
) -> list[float]:
    """Raw returns of ``episodes`` whole games played by ``agent.act(obs, explore=False, deterministic)``.

    Each sub-env contributes its first game only, so short games are not over-counted. With ``video``, one game
    is played alone and recorded to that file.
    """
    agent.seed_evaluation(seed)
    with torch.random.fork_rng():  # evaluation's torch draws (sampled actions) leave training's stream alone
        torch.manual_seed(seed)
        if video is not None:
            return [_record_episode(agent, env_name, seed, sticky_actions, Path(video), deterministic)]
        returns: list[float] = []
        while len(returns) < episodes:
            n = min(max_envs, episodes - len(returns))
            env = make_env(env_name, n, seed=seed + len(returns), training=False, sticky_actions=sticky_actions)
            obs, _ = env.reset()
            result = np.full(n, np.nan)
            while np.isnan(result).any():
                obs, _, _, _, info = env.step(agent.act(obs, explore=False, deterministic=deterministic))
                first = info["episode_done"] & np.isnan(result)
                result[first] = info["episode_return"][first]
            env.close()
            returns.extend(result.tolist())
        return returns


def _record_episode(agent: Agent, env_name: str, seed: int, sticky_actions: bool, path: Path,
                    deterministic: bool) -> float:
    from rlkit.video import VideoWriter

    env = make_env(env_name, 1, seed=seed, training=False, sticky_actions=sticky_actions, render=True)
    obs, _ = env.reset()
    with VideoWriter(path, fps=env.metadata.get("render_fps") or 30) as writer:
        writer.write(env.render()[0])
        while True:
            obs, _, _, _, info = env.step(agent.act(obs, explore=False, deterministic=deterministic))
            if info["episode_done"][0]:
                env.close()
                return float(info["episode_return"][0])
            writer.write(env.render()[0])


def frame_stack_of(env) -> int:
    """Frames stacked in an observation: 4 for Atari image stacks, 1 otherwise."""
    return env.single_observation_space.shape[0] if env.resolved.family == "atari" else 1


def make_training_run(settings: RunSettings, config: Any, run_dir: Path, resume: dict[str, Any] | None = None) -> Loop:
    """Assemble env, agent, replay, source and loop for ``settings``; ``resume`` continues a checkpoint."""
    seed_everything(settings.seed)  # the same initial weights on every process under torchrun
    device = pick_device(settings.device)
    rank, world_size = init_distributed(device)
    agent_class = get_agent_spec(settings.agent).agent_class
    if world_size > 1 and not agent_class.data_parallel:
        data_parallel = [name for name, spec in AGENTS.items() if spec.agent_class.data_parallel]
        raise UserError(f"{settings.agent} learns in one process and cannot run under torchrun: run it "
                        f"without torchrun (data-parallel agents: {', '.join(data_parallel)})")
    env = make_env(settings.env, 1, training=False, sticky_actions=settings.sticky_actions)  # its spaces and id
    env.close()
    agent = build_agent(settings.agent, config, env.single_observation_space, env.single_action_space, device,
                        settings.total_steps, settings.seed)
    source = make_rl_source(agent, settings.env, settings.num_envs, settings.seed, settings.sticky_actions,
                            settings.total_steps, rank)

    header = {
        "kind": "agent",
        "agent": settings.agent,
        "agent_config": config_to_dict(config),
        "settings": dict(vars(settings)),
        "env_id": env.resolved.env_id,
    }

    def evaluate() -> dict[str, float]:
        returns = evaluate_agent(agent, settings.env, settings.eval_episodes, settings.seed + 10_000,
                                 settings.sticky_actions)
        return {"eval/mean_return": float(np.mean(returns)), "eval/std_return": float(np.std(returns))}

    def save_replay(directory: Path) -> None:
        if settings.save_buffer and isinstance(source, ReplaySource):
            source.save_buffer(str(directory / REPLAY_FILE))

    loop = Loop(
        agent, source,
        LoopConfig(settings.total_steps, settings.eval_interval, settings.checkpoint_interval,
                   progress=settings.progress),
        run_dir, header, evaluate=evaluate if settings.eval_episodes > 0 else None, save_extra=save_replay,
    )
    if resume is not None:
        loop.restore(resume)
        if (run_dir / REPLAY_FILE).exists() and isinstance(source, ReplaySource):
            source.load_buffer(str(run_dir / REPLAY_FILE))
        # The env's internal state is not in the checkpoint: start fresh games with a seed tied to the step.
        source.reset(seed=settings.seed + source.steps)
    if is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(header, indent=2) + "\n")
    return loop


def agent_from_checkpoint(checkpoint: dict[str, Any], device: str = "auto") -> tuple[Agent, RunSettings]:
    """Rebuild a trained agent (and its run settings) from a checkpoint dict."""
    if checkpoint.get("kind") != "agent":
        raise UserError(f"this checkpoint holds a {checkpoint.get('kind')!r} run, not an agent")
    settings = RunSettings(**checkpoint["settings"])
    spec = get_agent_spec(checkpoint["agent"])
    config = config_from_dict(spec.agent_class.config_class, checkpoint["agent_config"])
    env = make_env(settings.env, 1, training=False, sticky_actions=settings.sticky_actions)
    agent = build_agent(checkpoint["agent"], config, env.single_observation_space, env.single_action_space,
                        pick_device(device), settings.total_steps, settings.seed)
    env.close()
    agent.load_state_dict(checkpoint["learner"])
    return agent, settings
