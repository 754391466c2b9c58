"""``train.py`` as a benchmark runs it: a child process on one torch thread, in a run directory that is kept or a
scratch one, and the evaluations it wrote handed back (the learning benchmarks all need exactly this)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def single_thread_env() -> dict[str, str]:
    """The environment for a child run: one torch (OpenMP, MKL) thread, rlkit importable from this checkout."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def evaluations(run_dir: Path) -> list[dict[str, Any]]:
    """Every record of a run's ``eval.jsonl``, in order; the last is its final evaluation."""
    return [json.loads(line) for line in (run_dir / "eval.jsonl").read_text().splitlines() if line.strip()]


def command(arguments: Sequence[str], run_dir: Path | None = None) -> list[str]:
    """``train.py ARGUMENTS`` as a child process runs it; with ``run_dir``, a run there without a progress bar."""
    where = ["--run-dir", str(run_dir), "--no-progress"] if run_dir is not None else []
    return [sys.executable, str(ROOT / "train.py"), *arguments, *where]


def train(arguments: Sequence[str], run_dir: Path | None = None, timeout: float | None = None,
          label: str = "") -> list[dict[str, Any]]:
    """Run ``train.py ARGUMENTS --run-dir DIR --no-progress`` and return its evaluations.

    ``DIR`` is ``run_dir`` (kept for ``evaluate.py``) or a scratch folder removed afterwards. A run that exits
    non-zero raises :class:`RuntimeError` carrying ``label`` and the tail of its stderr; ``timeout`` (seconds)
    raises :class:`subprocess.TimeoutExpired`.
    """
    with tempfile.TemporaryDirectory(prefix="rlkit-bench-") as folder:
        where = run_dir if run_dir is not None else Path(folder) / "run"
        done = subprocess.run(command(arguments, where), cwd=ROOT, env=single_thread_env(), capture_output=True,
                              text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            prefix = f"{label}: " if label else ""
            raise RuntimeError(f"{prefix}exit {done.returncode}: {done.stderr.strip()[-500:]}")
        return evaluations(where)
