"""Off-policy agents (DQN on Atari, DDPG/TD3/SAC on MuJoCo): training steps/s through the real loop, next to
env-only and update-only rates.

    python benchmarks/offpolicy_speed.py --env Breakout --seconds 60
    python benchmarks/offpolicy_speed.py --agent sac --env HalfCheetah --seconds 60 --skip-vector

Prints one JSON object. The "expected" rate is what stepping the env, choosing an action and one update every
``train_frequency`` steps would cost with no loop at all, from rates measured apart; ``overhead`` is how much slower
the loop is than that. Rates measured minutes apart on this VM drift by 15-25%, so the run also times each part
inside the loop: ``inside_loop_ms_per_step`` splits one training step, and ``loop_own_fraction`` is the share of
wall time spent in none of them (the loop's bookkeeping, logging, progress, checkpoint at the end).
For DQN epsilon is held at 0.01 (the end of the schedule), as in the Stable-Baselines3 measurement in
shared/MACHINE.md. Replay is 100k transitions; everything else is the agent's preset for the env family.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from rlkit.agents import get_agent_spec
from rlkit.envs import make_env, resolve_env
from rlkit.jobs.agent import AgentJob, AgentSettings


def env_rate(env_name: str, num_envs: int, backend: str, seconds: float) -> float:
    """Preprocessed env steps/s (summed over sub-envs) with random actions."""
    env = make_env(env_name, num_envs, seed=0, backend=backend)
    env.reset()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        env.step(env.action_space.sample())
        steps += num_envs
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def timed(fn, seconds: float) -> float:
    """Calls per second of ``fn`` over about ``seconds``, after two warm-up calls."""
    fn(), fn()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        calls += 1
    return calls / (time.perf_counter() - start)


def _timing(fn, spent: dict[str, float], name: str):
    """``fn``, adding its wall time to ``spent[name]``."""

    def timed_call(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - start

    return timed_call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Breakout")
    parser.add_argument("--agent", default="dqn")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the training measurement")
    parser.add_argument("--learning-starts", type=int, default=2_000)
    parser.add_argument("--skip-vector", action="store_true", help="skip the 8-env backend comparison")
    args = parser.parse_args()

    result: dict = {"env": args.env, "agent": args.agent, "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine()}
    short = max(args.seconds / 6, 5.0)
    result["env_sps_1env"] = env_rate(args.env, 1, "ale", short)
    if not args.skip_vector and resolve_env(args.env).family == "atari":
        result["env_sps_8env_ale"] = env_rate(args.env, 8, "ale", short)
        result["env_sps_8env_gymnasium"] = env_rate(args.env, 8, "gymnasium", short)

    spec = get_agent_spec(args.agent)
    config = spec.preset(resolve_env(args.env).family)
    changes = {"learning_starts": args.learning_starts, "buffer_size": 100_000, "start_e": 0.01, "end_e": 0.01}
    names = {f.name for f in dataclasses.fields(config)}
    config = dataclasses.replace(config, **{k: v for k, v in changes.items() if k in names})
    with tempfile.TemporaryDirectory() as run_dir:
        settings = AgentSettings(agent=args.agent, env=args.env, total_steps=args.learning_starts, eval_episodes=0,
                                 progress=False)
        loop = AgentJob().build(settings, config, Path(run_dir))
        agent, source = loop.learner, loop.source
        while source.steps < args.learning_starts:  # fill replay up to learning_starts (loop.run would close it)
            source.next()
        batch = source.buffer.sample(config.batch_size)
        result["update_per_s"] = timed(lambda: agent.update(batch), short)
        result["sample_per_s"] = timed(lambda: source.buffer.sample(config.batch_size), short / 4)
        obs = source.obs
        result["act_per_s"] = timed(lambda: agent.act(obs, explore=True), short / 4)

        # Training through the loop, measured after learning starts.
        steps_before, start = source.steps, time.perf_counter()
        loop.config.total_steps = 10**12
        deadline = start + args.seconds
        original_next = source.next

        def next_until_deadline():
            if time.perf_counter() > deadline:
                loop.config.total_steps = source.steps
            return original_next()

        source.next = next_until_deadline
        spent: dict[str, float] = {}
        for name, obj, method in (("env", source.env, "step"), ("act", agent, "act"), ("update", agent, "update"),
                                  ("replay_add", source.buffer, "add"), ("replay_sample", source.buffer, "sample")):
            setattr(obj, method, _timing(getattr(obj, method), spent, name))
        loop.run()
        elapsed = time.perf_counter() - start
        steps = source.steps - steps_before
        result["train_sps"] = steps / elapsed
        result["inside_loop_ms_per_step"] = {name: round(1000 * t / steps, 3) for name, t in spent.items()}
        result["loop_own_fraction"] = 1 - sum(spent.values()) / elapsed

    per_step = 1 / result["env_sps_1env"] + 1 / result["act_per_s"]
    per_step += (1 / result["update_per_s"] + 1 / result["sample_per_s"]) / config.train_frequency
    result["expected_sps"] = 1 / per_step
    result["overhead"] = result["expected_sps"] / result["train_sps"] - 1
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}))


if __name__ == "__main__":
    main()
