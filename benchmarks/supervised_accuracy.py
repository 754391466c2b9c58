"""Test accuracy and wall time of a supervised recipe, trained through ``train.py`` on real data.

    python benchmarks/supervised_accuracy.py --task mnist --net numpy-mlp --data-dir ../shared/data/mnist
    python benchmarks/supervised_accuracy.py --task fashion-mnist --net resnet -- --epochs 10

Flags after ``--`` go to ``train.py`` unchanged. Prints the test accuracy after every epoch and a markdown row.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import train  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True)
    parser.add_argument("--net", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default: 2)")
    parser.add_argument("--run-dir", type=Path, help="keep the run here (default: a temporary folder)")
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    torch.set_num_threads(args.threads)
    run_dir = args.run_dir or Path(tempfile.mkdtemp()) / "run"
    start = time.perf_counter()
    train.main(["--task", args.task, "--net", args.net, "--data-dir", args.data_dir, "--seed", str(args.seed),
                "--run-dir", str(run_dir), "--no-progress", *extra])
    wall = time.perf_counter() - start
    evals = [json.loads(line) for line in (run_dir / "eval.jsonl").read_text().splitlines()]
    for row in evals:
        print(f"step {row['step']:>7}: test accuracy {100 * row['eval/accuracy']:.2f}%")
    best = max(row["eval/accuracy"] for row in evals)
    print(f"| {args.task} | {args.net} {' '.join(extra)} | seed {args.seed} | final {100 * evals[-1]['eval/accuracy']:.2f}% "
          f"(best {100 * best:.2f}%) | {wall / 60:.1f} min | {platform.processor() or platform.machine()}, "
          f"{args.threads} threads |")


if __name__ == "__main__":
    main()
