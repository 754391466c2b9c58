"""A3C learning check: train A3C on CartPole-v1 through train.py and report when it is solved.

    OMP_NUM_THREADS=1 python benchmarks/a3c_cartpole.py --steps 100000 --seeds 1 2 3

For each seed prints the evaluation curve (env step, wall-clock seconds since the command started, mean raw return
of ``--eval-episodes`` greedy games every ``--eval-interval`` steps) and the first step and wall time at which the
mean reached the threshold (475), then one JSON line. Wall time includes starting the worker processes and the
evaluations themselves. Extra arguments after ``--`` go to train.py unchanged (e.g. ``-- --gae-lambda 0.9``).
A smoke run: ``--steps 2000 --eval-interval 1000 --eval-episodes 2 --seeds 1``.
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


def evaluation_curve(run: Path, start: float) -> list[tuple[int, float, float]]:
    """(step, wall seconds since ``start``, mean return) of every evaluation, from the run's TensorBoard events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run))
    events.Reload()
    return [(e.step, round(e.wall_time - start, 1), round(e.value, 1)) for e in events.Scalars("eval/mean_return")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100_000, help="env steps per seed (default: 100000)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--threshold", type=float, default=475.0)
    parser.add_argument("--eval-interval", type=int, default=5_000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("extra", nargs="*", help="more train.py flags, after --")
    args = parser.parse_args()

    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            run = Path(tmp) / "run"
            start = time.time()
            train.main(["--agent", "a3c", "--env", "CartPole-v1", "--num-workers", str(args.num_workers),
                        "--total-steps", str(args.steps), "--seed", str(seed),
                        "--eval-interval", str(args.eval_interval), "--eval-episodes", str(args.eval_episodes),
                        "--run-dir", str(run), "--no-progress", *args.extra])
            wall = time.time() - start
            curve = evaluation_curve(run, start)
        reached = next(((step, seconds) for step, seconds, value in curve if value >= args.threshold), (None, None))
        print(f"seed {seed}: {'step':>8} {'wall s':>8} {'mean return':>12}")
        for step, seconds, value in curve:
            print(f"        {step:>8} {seconds:>8.1f} {value:>12.1f}")
        when = f"at step {reached[0]}, {reached[1]} s" if reached[0] is not None else "never"
        print(f"seed {seed}: mean >= {args.threshold:g} first {when} (the run took {wall:.0f} s)")
        print(json.dumps({"agent": "a3c", "env": "CartPole-v1", "seed": seed, "num_workers": args.num_workers,
                          "steps": args.steps, "first_step_at_threshold": reached[0],
                          "first_wall_s_at_threshold": reached[1], "final": curve[-1][2] if curve else None,
                          "wall_s": round(wall), "curve": curve}), flush=True)


if __name__ == "__main__":
    main()
