"""What the per-step check for non-finite env outputs (:meth:`rlkit.envs.signals.EpisodeSignals._check_finite`)
costs: microseconds per vector-env step with the check and without it, on vector-observation envs (Atari's uint8
frames are never checked).

    python benchmarks/finite_check_cost.py --rounds 7 --steps 3000

Each round steps every env with the check and then with it replaced by a no-op (same actions, same seeds), so
the two sides see the same machine state; the medians over the rounds and their difference are printed and
appended to ``--results``. Run it alone: the cost is a few microseconds, below the noise of a loaded machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from rlkit.envs import make_env  # noqa: E402
from rlkit.envs.signals import EpisodeSignals  # noqa: E402

WORKLOADS = [("CartPole", 1), ("CartPole", 8), ("Pendulum", 1), ("HalfCheetah", 1)]


def microseconds_per_step(name: str, num_envs: int, steps: int, checked: bool) -> float:
    original = EpisodeSignals._check_finite
    if not checked:
        EpisodeSignals._check_finite = lambda self, what, values, steps=None: None
    try:
        env = make_env(name, num_envs, seed=0)
        env.reset()
        rng = np.random.default_rng(0)
        actions = [env.action_space.sample() for _ in range(64)]
        rng.shuffle(actions)
        start = time.perf_counter()
        for i in range(steps):
            env.step(actions[i % len(actions)])
        elapsed = time.perf_counter() - start
        env.close()
    finally:
        EpisodeSignals._check_finite = original
    return elapsed / steps * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--results", type=Path, default=Path(__file__).with_name("finite_check_cost.jsonl"))
    args = parser.parse_args()
    for name, num_envs in WORKLOADS:
        on, off = [], []
        microseconds_per_step(name, num_envs, args.steps // 4, True)  # warm-up
        for _ in range(args.rounds):
            on.append(microseconds_per_step(name, num_envs, args.steps, True))
            off.append(microseconds_per_step(name, num_envs, args.steps, False))
        row = {"env": name, "num_envs": num_envs, "checked_us": round(statistics.median(on), 2),
               "unchecked_us": round(statistics.median(off), 2),
               "cost_us": round(statistics.median(on) - statistics.median(off), 2),
               "cost_pct": round(100 * (statistics.median(on) / statistics.median(off) - 1), 1),
               "rounds": args.rounds, "steps": args.steps, "machine": platform.processor() or platform.machine(),
               "date": time.strftime("%Y-%m-%d")}
        print(json.dumps(row))
        with args.results.open("a") as out:
            out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
