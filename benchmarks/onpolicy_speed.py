"""On-policy agents: training steps/s through the real loop, next to env-only steps/s with the same wrappers.

    python benchmarks/onpolicy_speed.py --agent ppo --env Breakout --seconds 60     # preset: 8 envs
    python benchmarks/onpolicy_speed.py --agent ppo --env HalfCheetah --seconds 60  # preset: 1 env

Prints one JSON object: env-only steps/s (random actions, the agent's preset number of envs), training steps/s,
and where a training step's time goes inside the loop (env, acting, update, the loop's own bookkeeping).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from offpolicy_speed import _timing, env_rate  # noqa: E402

from rlkit.agents import get_agent_spec  # noqa: E402
from rlkit.envs import resolve_env  # noqa: E402
from rlkit.jobs.agent import AgentJob, AgentSettings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agent", default="ppo")
    parser.add_argument("--env", default="Breakout")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--num-envs", type=int, help="default: the agent's preset for the env family")
    args = parser.parse_args()

    spec = get_agent_spec(args.agent)
    family = resolve_env(args.env).family
    num_envs = args.num_envs or spec.run_defaults(family).num_envs
    result = {"agent": args.agent, "env": args.env, "num_envs": num_envs, "torch": torch.__version__,
              "threads": torch.get_num_threads()}
    result["env_sps"] = env_rate(args.env, num_envs, "auto", max(args.seconds / 4, 5.0))

    with tempfile.TemporaryDirectory() as run_dir:
        settings = AgentSettings(agent=args.agent, env=args.env, total_steps=10**12, num_envs=num_envs,
                               eval_episodes=0, progress=False)
        loop = AgentJob().build(settings, spec.preset(family), Path(run_dir))
        agent, source = loop.learner, loop.source
        source.next()  # warm-up rollout (first-call allocations)
        spent: dict[str, float] = {}
        for name, obj, method in (("env", source.env, "step"), ("act", agent, "policy_step"),
                                  ("update", agent, "update")):
            setattr(obj, method, _timing(getattr(obj, method), spent, name))
        original_next, deadline = source.next, time.perf_counter() + args.seconds

        def next_until_deadline():
            if time.perf_counter() > deadline:
                loop.config.total_steps = source.steps
            return original_next()

        source.next = next_until_deadline
        steps_before, start = source.steps, time.perf_counter()
        loop.run()
        elapsed = time.perf_counter() - start
        steps = source.steps - steps_before
    result["train_sps"] = steps / elapsed
    result["ms_per_step"] = {name: round(1000 * t / steps, 4) for name, t in spent.items()}
    result["rollout_and_loop_fraction"] = 1 - sum(spent.values()) / elapsed
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}))


if __name__ == "__main__":
    main()
