"""Env steps per second of a ``train.py`` run, read from its TensorBoard ``time/sps`` scalars (the loop logs one
every 1,000 steps): the median of those logged after the warm-up. Shared by the benchmarks that compare ways of
running one job (``distributed_actors.py``, ``overlap_speed.py``)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = Path(__file__).resolve().parents[1]


def train_rate(flags: list[str], run_dir: Path, learning_starts: int, processes: int = 1) -> dict:
    """Run ``train.py FLAGS --run-dir RUN_DIR`` (under torchrun for ``processes`` > 1) with one torch thread per
    process; returns its wall time and the median of ``time/sps`` past ``learning_starts`` + 1,000 steps."""
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)]
                if processes > 1 else [sys.executable])
    start = time.perf_counter()
    subprocess.run([*launcher, str(ROOT / "train.py"), *flags, "--run-dir", str(run_dir), "--threads", "1",
                    "--no-progress"], check=True, capture_output=True, text=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - start
    events = EventAccumulator(str(run_dir))
    events.Reload()
    rates = [event.value for event in events.Scalars("time/sps") if event.step > learning_starts + 1_000]
    if not rates:
        raise SystemExit(f"{run_dir}: no time/sps past the warm-up; raise --total-steps")
    return {"wall_s": round(wall, 1), "sps_median": round(statistics.median(rates), 1), "sps_samples": len(rates)}
