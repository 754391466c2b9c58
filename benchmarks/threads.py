"""Wall time of short training runs with torch's default threads (one per core) against ``--threads`` auto, alone
and with two seeds side by side (what users do all the time), on this machine.

    python benchmarks/threads.py            # PPO CartPole, SAC Pendulum, DQN Breakout, ResNet on Fashion-MNIST
    python benchmarks/threads.py --workloads dqn-breakout --threads 1

Prints one JSON line per (workload, threads, side-by-side) with the wall seconds of each process. Run it alone.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FASHION = ROOT.parent / "shared" / "data" / "fashion-mnist"
WORKLOADS = {
    "ppo-cartpole": ["--agent", "ppo", "--env", "CartPole", "--total-steps", "16384", "--eval-episodes", "0"],
    "sac-pendulum": ["--agent", "sac", "--env", "Pendulum", "--total-steps", "1500", "--learning-starts", "500",
                     "--eval-episodes", "0"],
    "dqn-breakout": ["--agent", "dqn", "--env", "Breakout", "--total-steps", "3000", "--learning-starts", "1000",
                     "--buffer-size", "10000", "--eval-episodes", "0"],
    # the course's ResNet at half width, 60 updates of 128 images and one evaluation on the 10k test images
    "resnet-fashion-mnist": ["--task", "fashion-mnist", "--net", "resnet", "--width", "0.5", "--max-steps", "60",
                             "--data-dir", str(FASHION)],
}


def run(args: list[str], threads: str, copies: int) -> list[float]:
    """Start ``copies`` runs at once (seeds 1, 2, ...) and return each one's wall seconds."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # auto must not see the caller's
    with tempfile.TemporaryDirectory() as tmp:
        procs = []
        for seed in range(1, copies + 1):
            argv = [sys.executable, str(ROOT / "train.py"), *args, "--seed", str(seed), "--threads", threads,
                    "--no-progress", "--run-dir", f"{tmp}/run{seed}"]
            procs.append((time.perf_counter(), subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)))
        walls = []
        for start, proc in procs:
            if proc.wait() != 0:
                raise SystemExit(f"a run failed: {' '.join(proc.args)}")
            walls.append(time.perf_counter() - start)
    return walls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS),
                        help="resnet-fashion-mnist reads ../shared/data/fashion-mnist")
    parser.add_argument("--threads", nargs="+", default=["default", "auto"],
                        help="settings to compare: default (torch's: one per core), auto, or a number")
    args = parser.parse_args()
    values = {"default": (str(os.cpu_count() or 1), "torch default"), "auto": ("0", "auto")}
    for name in args.workloads:
        for threads, label in (values.get(t, (t, t)) for t in args.threads):
            for copies in (1, 2):
                walls = run(WORKLOADS[name], threads, copies)
                print(json.dumps({"workload": name, "threads": label, "side_by_side": copies,
                                  "wall_s": [round(w, 1) for w in walls]}), flush=True)


if __name__ == "__main__":
    main()
