"""Throughput of one process against two under torchrun (data parallel, gloo) on this machine.

    python benchmarks/ddp_scaling.py --data-dir ../shared/data/fashion-mnist

Runs each job as 1 process x 2 threads, 1 process x 1 thread and 2 processes x 1 thread (``torchrun --standalone``)
and reads the steady-state ``time/sps`` the loop logged (steps of one process per second; the last logged window).
Supervised: images/s = sps x batch x processes. PPO: env steps/s = sps x processes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def last_sps(run: Path) -> float:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run))
    events.Reload()
    return events.Scalars("time/sps")[-1].value


def run(args: list[str], processes: int, threads: int) -> float:
    run_dir = Path(tempfile.mkdtemp()) / "run"
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
                if processes > 1 else [sys.executable])
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run([*launcher, "train.py", *args, "--run-dir", str(run_dir), "--no-progress"], cwd=ROOT, env=env,
                   check=True, capture_output=True)
    return last_sps(run_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="Fashion-MNIST folder")
    parser.add_argument("--width", default="0.5", help="ResNet width multiplier (default: 0.5)")
    parser.add_argument("--steps", type=int, default=300, help="updates per supervised run (default: 300)")
    parser.add_argument("--ppo-steps", type=int, default=8192, help="env steps per process for PPO (default: 8192)")
    args = parser.parse_args()
    jobs = {
        "fashion-mnist resnet (images/s)": (["--task", "fashion-mnist", "--net", "resnet", "--data-dir", args.data_dir,
                                             "--width", args.width, "--max-steps", str(args.steps), "--eval-interval",
                                             "1000000", "--checkpoint-interval", "1000000"], 128),
        "PPO Breakout, 8 envs per process (env steps/s)": (["--agent", "ppo", "--env", "Breakout", "--total-steps",
                                                            str(args.ppo_steps), "--eval-episodes", "0"], 1),
    }
    print("| job | 1 process x 2 threads | 1 process x 1 thread | 2 processes x 1 thread | 2 processes / best 1 |")
    print("|---|---|---|---|---|")
    for name, (job_args, per_step) in jobs.items():
        one_two = run(job_args, 1, 2) * per_step
        one_one = run(job_args, 1, 1) * per_step
        two_one = run(job_args, 2, 1) * per_step * 2
        print(f"| {name} | {one_two:.0f} | {one_one:.0f} | {two_one:.0f} | {two_one / max(one_two, one_one):.2f}x |",
              flush=True)


if __name__ == "__main__":
    main()
