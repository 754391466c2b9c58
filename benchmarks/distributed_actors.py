"""Env steps per second of a replay learner fed by 1-3 actor processes (``torchrun``, rlkit/sources/actors.py),
next to the same run in one process.

    PYTHONPATH=. python benchmarks/distributed_actors.py                      # DQN on Breakout, 0-3 actors
    PYTHONPATH=. python benchmarks/distributed_actors.py --agent sac --env HalfCheetah --actors 0 1

Each configuration runs ``train.py`` (under torchrun with 1 + N processes for N actors) for ``--total-steps`` with
``--learning-starts`` of warm-up, no evaluation, one torch thread per process. The rate is the median of the
loop's ``time/sps`` scalars (every 1,000 steps) after the warm-up; the learner keeps the config's ratio of
updates to env steps with or without actors, so updates per second are that rate times gradient_steps /
train_frequency. Prints a markdown table and writes ``benchmarks/distributed_actors.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_rate import ROOT, train_rate  # noqa: E402


def run(agent: str, env: str, actors: int, total_steps: int, learning_starts: int, directory: Path) -> dict:
    flags = ["--agent", agent, "--env", env, "--total-steps", str(total_steps), "--learning-starts",
             str(learning_starts), "--eval-episodes", "0"]
    rate = train_rate(flags, directory / f"{agent}-{actors}", learning_starts, processes=actors + 1)
    return {"agent": agent, "env": env, "actors": actors, "total_steps": total_steps, **rate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agent", default="dqn")
    parser.add_argument("--env", default="Breakout")
    parser.add_argument("--actors", type=int, nargs="+", default=[0, 1, 2, 3], help="0: one process, no actors")
    parser.add_argument("--total-steps", type=int, default=12_000)
    parser.add_argument("--learning-starts", type=int, default=2_000)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "distributed_actors.jsonl")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for actors in args.actors:
            rows.append(run(args.agent, args.env, actors, args.total_steps, args.learning_starts, Path(directory)))
            print(json.dumps(rows[-1]), flush=True)
    with args.out.open("a") as out:
        for row in rows:
            out.write(json.dumps(row) + "\n")
    single = next((row["sps_median"] for row in rows if row["actors"] == 0), None)
    print(f"\n| {args.agent} on {args.env} | processes | env steps/s | vs one process |\n|---|---|---|---|")
    for row in rows:
        ratio = f"{row['sps_median'] / single:.2f}x" if single else "-"
        label = "one process" if row["actors"] == 0 else f"learner + {row['actors']} actor(s)"
        print(f"| {label} | {row['actors'] + 1} | {row['sps_median']:.0f} | {ratio} |")


if __name__ == "__main__":
    main()
