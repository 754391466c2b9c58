"""Env steps per second of a ``train.py`` run, read from its TensorBoard ``time/sps`` scalars (the loop logs one
every 1,000 steps): the median of those logged after the warm-up. Shared by the benchmarks that compare ways of
running one job (``distributed_actors.py``, ``overlap_speed.py``, ``allocator_speed.py``), with :func:`alternate`
for the A/B ones."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = Path(__file__).resolve().parents[1]


def train_rate(flags: list[str], run_dir: Path, learning_starts: int, processes: int = 1,
               env: dict[str, str] | None = None) -> dict:
    """Run ``train.py FLAGS --run-dir RUN_DIR`` (under torchrun for ``processes`` > 1) with one torch thread per
    process and ``env`` added to the environment; returns its wall time and the median of ``time/sps`` past
    ``learning_starts`` + 1,000 steps."""
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)]
                if processes > 1 else [sys.executable])
    start = time.perf_counter()
    subprocess.run([*launcher, str(ROOT / "train.py"), *flags, "--run-dir", str(run_dir), "--threads", "1",
                    "--no-progress"], check=True, capture_output=True, text=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **(env or {})})
    wall = time.perf_counter() - start
    events = EventAccumulator(str(run_dir))
    events.Reload()
    rates = [event.value for event in events.Scalars("time/sps") if event.step > learning_starts + 1_000]
    if not rates:
        raise SystemExit(f"{run_dir}: no time/sps past the warm-up; raise --total-steps")
    return {"wall_s": round(wall, 1), "sps_median": round(statistics.median(rates), 1), "sps_samples": len(rates)}


def alternate(workloads: dict[str, tuple[list[str], int]], variants: dict[str, tuple[list[str], dict[str, str]]],
              repeats: int, directory: Path, out: Path) -> str:
    """Each workload (name -> train.py flags and the warm-up steps its rate skips, as ``train_rate``'s
    ``learning_starts``) under each variant (name -> extra flags, extra environment), the
    variants taking turns within every repeat so that all of them see the same machine. Appends one JSON row per
    run to ``out``; returns a markdown table: the median rate of each variant and, per repeat, the ratio of each
    later variant to the first."""
    names = list(variants)
    header = " | ".join(f"{name} (steps/s)" for name in names)
    ratios_header = " | ".join(f"{name}/{names[0]} per repeat" for name in names[1:])
    lines = [f"| workload | {header} | {ratios_header} |", "|---" * (1 + 2 * len(names) - 1) + "|"]
    for workload, (flags, learning_starts) in workloads.items():
        rates: dict[str, list[float]] = {name: [] for name in names}
        for repeat in range(repeats):
            for name, (extra_flags, extra_env) in variants.items():
                rate = train_rate([*flags, *extra_flags], directory / f"{workload}-{name}-{repeat}".replace(":", "-"),
                                  learning_starts, env=extra_env)
                row = {"workload": workload, "variant": name, "repeat": repeat, **rate}
                print(json.dumps(row), flush=True)
                with out.open("a") as file:
                    file.write(json.dumps(row) + "\n")
                rates[name].append(rate["sps_median"])
        medians = " | ".join(f"{statistics.median(rates[name]):.0f}" for name in names)
        ratios = " | ".join(", ".join(f"{b / a:.2f}" for a, b in zip(rates[names[0]], rates[name]))
                            for name in names[1:])
        lines.append(f"| {workload} | {medians} | {ratios} |")
    return "\n".join(lines)
