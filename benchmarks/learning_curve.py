"""Learning check: train an agent on an env for several seeds through train.py and report each seed's evaluations.

    python benchmarks/learning_curve.py --agent dqn --env CartPole --steps 50000 --seeds 1 2 3 --threshold 475

For each seed prints the evaluations (mean raw return of ``--eval-episodes`` games every ``--eval-interval``
steps), the first step at which the mean reached the threshold, and the final mean. Extra arguments after ``--``
go to train.py unchanged.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import train  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agent", default="dqn")
    parser.add_argument("--env", default="CartPole")
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--threshold", type=float, default=475.0)
    parser.add_argument("--eval-interval", type=int, default=5_000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("extra", nargs="*", help="more train.py flags, after --")
    args = parser.parse_args()

    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            run = Path(tmp) / "run"
            start = time.time()
            train.main(["--agent", args.agent, "--env", args.env, "--total-steps", str(args.steps), "--seed", str(seed),
                        "--eval-interval", str(args.eval_interval), "--eval-episodes", str(args.eval_episodes),
                        "--run-dir", str(run), "--no-progress", *args.extra])
            evals = [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]
            curve = [(e["step"], round(e["eval/mean_return"], 1)) for e in evals]
            reached = next((step for step, value in curve if value >= args.threshold), None)
            print(json.dumps({"agent": args.agent, "env": args.env, "seed": seed, "steps": args.steps,
                              "first_step_at_threshold": reached, "final": curve[-1][1], "best": max(v for _, v in curve),
                              "wall_s": round(time.time() - start), "curve": curve}), flush=True)


if __name__ == "__main__":
    main()
