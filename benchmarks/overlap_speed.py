"""``--overlap on`` against ``--overlap off``: env steps per second of the same replay-learner run, the two
alternating in one sitting so that both see the same machine.

    PYTHONPATH=. python benchmarks/overlap_speed.py                                   # DQN Breakout, SAC HalfCheetah
    PYTHONPATH=. python benchmarks/overlap_speed.py --workloads dqn:CartPole --repeats 2

Each run is ``train.py --agent A --env E --total-steps N --learning-starts W --eval-episodes 0 --threads 1`` with
its rate read as in ``train_rate.py``; it needs two free cores (the update on one, the env thread on the other),
so run it alone. Prints a markdown table (median over repeats, and each repeat's on/off ratio) and appends the rows
to ``benchmarks/overlap_speed.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_rate import ROOT, train_rate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", nargs="+", default=["dqn:Breakout", "sac:HalfCheetah"], metavar="AGENT:ENV")
    parser.add_argument("--total-steps", type=int, default=7_000)
    parser.add_argument("--learning-starts", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "overlap_speed.jsonl")
    args = parser.parse_args()
    table = []
    with tempfile.TemporaryDirectory() as directory:
        for workload in args.workloads:
            agent, env = workload.split(":")
            rows = []
            for repeat in range(args.repeats):
                for overlap in ("off", "on"):
                    flags = ["--agent", agent, "--env", env, "--total-steps", str(args.total_steps),
                             "--learning-starts", str(args.learning_starts), "--eval-episodes", "0",
                             "--overlap", overlap]
                    rate = train_rate(flags, Path(directory) / f"{agent}-{env}-{overlap}-{repeat}",
                                      args.learning_starts)
                    rows.append({"agent": agent, "env": env, "overlap": overlap, "repeat": repeat, **rate})
                    print(json.dumps(rows[-1]), flush=True)
            with args.out.open("a") as out:
                for row in rows:
                    out.write(json.dumps(row) + "\n")
            off = [r["sps_median"] for r in rows if r["overlap"] == "off"]
            on = [r["sps_median"] for r in rows if r["overlap"] == "on"]
            ratios = ", ".join(f"{b / a:.2f}" for a, b in zip(off, on))
            table.append(f"| {agent} {env} | {statistics.median(off):.0f} | {statistics.median(on):.0f} | {ratios} |")
    print("\n| workload | off (steps/s) | on (steps/s) | on/off per repeat |\n|---|---|---|---|")
    print("\n".join(table))


if __name__ == "__main__":
    main()
