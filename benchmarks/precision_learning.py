"""Learning under ``--precision bf16`` against fp32: the same agent, env, budget and seeds; each run's final
evaluation. bf16 may become a default (``auto``) only once it learns as well as fp32 here.

    PYTHONPATH=. python benchmarks/precision_learning.py --agent sac --env Pendulum --total-steps 20000 --seeds 1 2 3
    PYTHONPATH=. python benchmarks/precision_learning.py --agent dqn --env Breakout --total-steps 200000 --jobs 1

Each run is ``train.py --agent A --env E --total-steps N --seed S --precision P`` (plus ``--extra``) with one torch
thread, ``--jobs`` at a time. Prints a markdown table: the final mean return of every seed, mean ± sd per precision,
the verdict (a tie is a gap within the larger of the two spreads over seeds, as in ``sweep.py``) and each side's
wall time; appends each run to ``--out``. On a CPU without AMX or AVX512-BF16, bf16 is emulated: its learning
holds for any machine (the same rounding), its wall time does not.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import runner  # train.py on one thread, its evaluations back
import sweep  # its verdict and mean ± sd

ROOT = Path(__file__).resolve().parents[1]
PRECISIONS = ("fp32", "bf16")


def run_one(agent: str, env: str, steps: int, seed: int, precision: str, extra: list[str]) -> dict[str, Any]:
    """Train one run in a scratch folder; its final evaluation and wall time."""
    began = time.monotonic()
    final = runner.train(["--agent", agent, "--env", env, "--total-steps", str(steps), "--seed", str(seed),
                          "--precision", precision, "--threads", "1", *extra], label=f"{precision} seed {seed}")[-1]
    return {"agent": agent, "env": env, "steps": steps, "seed": seed, "precision": precision,
            "extra": shlex.join(extra), "mean": final["eval/mean_return"], "wall_s": round(time.monotonic() - began, 1),
            "date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d}"}


def table(rows: list[dict[str, Any]], seeds: list[int]) -> str:
    """The markdown comparison of ``rows`` (one per seed and precision)."""
    by = {(row["precision"], row["seed"]): row for row in rows}
    lines = ["| precision | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± sd | wall (s, total) |",
             "|---" * (len(seeds) + 3) + "|"]
    means: dict[str, list[float]] = {}
    for precision in PRECISIONS:
        got = [by[(precision, s)] for s in seeds if (precision, s) in by]
        means[precision] = [row["mean"] for row in got]
        cells = [f"{by[(precision, s)]['mean']:.1f}" if (precision, s) in by else "-" for s in seeds]
        lines.append(f"| {precision} | " + " | ".join(cells) + f" | {sweep.mean_sd(means[precision])} | "
                     f"{sum(row['wall_s'] for row in got):.0f} |")
    verdict = sweep.verdict(means["bf16"], means["fp32"])
    gap = (statistics.fmean(means["bf16"]) - statistics.fmean(means["fp32"])
           if means["bf16"] and means["fp32"] else float("nan"))
    lines.append(f"\nbf16 against fp32: {verdict} (gap of the means {gap:+.1f})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agent", required=True)
    parser.add_argument("--env", required=True)
    parser.add_argument("--total-steps", type=int, required=True)
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (one torch thread each)")
    parser.add_argument("--extra", default="", help='more train.py arguments, e.g. "--eval-episodes 20"')
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "precision_learning.jsonl")
    args = parser.parse_args(argv)
    extra = shlex.split(args.extra)
    plan = [(seed, precision) for seed in args.seeds for precision in PRECISIONS]
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda cell: run_one(args.agent, args.env, args.total_steps, *cell, extra), plan))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as out:
        out.writelines(json.dumps(row) + "\n" for row in rows)
    report = table(rows, args.seeds)
    print(report)
    return report


if __name__ == "__main__":
    main()
