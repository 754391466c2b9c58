"""Learning check: train an agent on an env for several seeds through train.py and report each seed's evaluations.

    python benchmarks/learning_curve.py --agent dqn --env CartPole --steps 50000 --seeds 1 2 3 --threshold 475
    python benchmarks/learning_curve.py --agent a3c --env CartPole-v1 --steps 100000 -- --num-workers 2

For each seed prints the evaluations (env step, the run's training seconds then, mean raw return of
``--eval-episodes`` games every ``--eval-interval`` steps), the first step and training time at which the mean
reached ``--threshold``, then one JSON line. Each run is a train.py child on one torch thread (its workers too, for
A3C); ``--runs-dir`` keeps the run directories for ``evaluate.py`` and TensorBoard. Extra arguments after ``--`` go
to train.py unchanged. A smoke run: ``--steps 2000 --eval-interval 1000 --eval-episodes 2 --seeds 1``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import runner  # noqa: E402


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agent", default="dqn")
    parser.add_argument("--env", default="CartPole")
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--threshold", type=float, default=475.0)
    parser.add_argument("--eval-interval", type=int, default=5_000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--runs-dir", type=Path, default=None,
                        help="keep each run in RUNS_DIR/AGENT_ENV_sSEED (default: scratch folders, deleted)")
    parser.add_argument("extra", nargs="*", help="more train.py flags, after --")
    args = parser.parse_args(argv)

    rows = []
    for seed in args.seeds:
        name = f"{args.agent}_{args.env.replace('/', '-')}_s{seed}"
        start = time.time()
        evals = runner.train(["--agent", args.agent, "--env", args.env, "--total-steps", str(args.steps),
                              "--seed", str(seed), "--eval-interval", str(args.eval_interval),
                              "--eval-episodes", str(args.eval_episodes), *args.extra],
                             args.runs_dir / name if args.runs_dir else None, label=name)
        wall = time.time() - start
        curve = [(e["step"], round(e["wall_time"], 1), round(e["eval/mean_return"], 1)) for e in evals]
        reached = next(((step, seconds) for step, seconds, value in curve if value >= args.threshold), (None, None))
        print(f"seed {seed}: {'step':>9} {'trained s':>10} {'mean return':>12}")
        for step, seconds, value in curve:
            print(f"        {step:>9} {seconds:>10.1f} {value:>12.1f}")
        when = f"at step {reached[0]}, {reached[1]} s of training" if reached[0] is not None else "never"
        print(f"seed {seed}: mean >= {args.threshold:g} first {when} (the run took {wall:.0f} s)")
        row = {"agent": args.agent, "env": args.env, "seed": seed, "steps": args.steps,
               "first_step_at_threshold": reached[0], "first_trained_s_at_threshold": reached[1],
               "final": curve[-1][2], "best": max(value for *_, value in curve), "wall_s": round(wall),
               "curve": curve}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
