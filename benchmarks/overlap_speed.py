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
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_rate import ROOT, alternate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", nargs="+", default=["dqn:Breakout", "sac:HalfCheetah"], metavar="AGENT:ENV")
    parser.add_argument("--total-steps", type=int, default=7_000)
    parser.add_argument("--learning-starts", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "overlap_speed.jsonl")
    args = parser.parse_args()
    workloads = {}
    for workload in args.workloads:
        agent, env = workload.split(":")
        workloads[f"{agent} {env}"] = (["--agent", agent, "--env", env, "--total-steps", str(args.total_steps),
                                        "--learning-starts", str(args.learning_starts), "--eval-episodes", "0"],
                                       args.learning_starts)
    variants = {"off": (["--overlap", "off"], {}), "on": (["--overlap", "on"], {})}
    with tempfile.TemporaryDirectory() as directory:
        print(alternate(workloads, variants, args.repeats, Path(directory), args.out))


if __name__ == "__main__":
    main()
