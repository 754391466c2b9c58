"""A table of the runs in a folder: ``rlkit runs`` (default ``./runs``), ``rlkit runs DIR --json``.

Per run: what it trains, steps done of its total, the best and the last evaluation (the job's metric:
``eval/mean_return`` for agents, accuracy for classifiers), training time, and its status: running (a live process
holds its lock), finished (all its steps done) or stopped (resume it with ``rlkit train --resume RUN_DIR``); ended
when the checkpoint does not say how many steps the run was to take (a supervised run without ``--max-steps`` trains
for its epochs, whose length depends on the data set).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from rlkit.analysis.curves import RunInfo, find_runs, read_evaluations, summarize
from rlkit.checkpoint import CHECKPOINT_NAME
from rlkit.errors import OneLineParser, UserError
from rlkit.runlock import is_locked


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", nargs="?", type=Path, default=Path("runs"), metavar="DIR",
                        help="a folder of runs, searched at any depth, or one run directory (default: runs)")
    parser.add_argument("--json", action="store_true", help="print the runs as a JSON list instead of a table")
    return parser


def read_progress(run_dir: Path) -> dict[str, Any]:
    """Steps done, the total and seconds of training from ``checkpoint.pt``; ``checkpoint`` says ``ok``,
    ``missing`` (none written yet) or ``damaged`` (unreadable: the run resumes from nothing)."""
    file = run_dir / CHECKPOINT_NAME
    if not file.exists():
        return {"checkpoint": "missing", "steps": None, "wall_time": None, "total_steps": None}
    try:
        # mmap: the tensors stay on disk; only the small pickled dict is read.
        data = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
        loop, settings = data["loop"], data.get("settings", {})
        steps, wall = int(loop["steps"]), float(loop["wall_time"])
        total = loop.get("total_steps") or settings.get("total_steps") or settings.get("max_steps") or None
    except Exception:  # noqa: BLE001 - any damage (truncated, garbage, wrong dict) is one word in the table
        return {"checkpoint": "damaged", "steps": None, "wall_time": None, "total_steps": None}
    return {"checkpoint": "ok", "steps": steps, "wall_time": wall, "total_steps": int(total) if total else None}


def describe(run: RunInfo, root: Path) -> dict[str, Any]:
    """One row of the table, as plain data."""
    progress = read_progress(run.path)
    total = progress["total_steps"] or run.settings.get("total_steps") or run.settings.get("max_steps") or None
    if is_locked(run.path):
        status = "running"
    elif total is None and progress["steps"] is not None:
        status = "ended"  # not running, but whether it did all its steps is not recorded (see the module's doc)
    elif total and progress["steps"] is not None and progress["steps"] >= total:
        status = "finished"
    else:
        status = "stopped"
    name = str(run.path.relative_to(root)) if run.path != root and run.path.is_relative_to(root) else run.path.name
    keys = ("env", "agent") if "agent" in run.settings else ("task", "net")
    return {"name": name, "path": str(run.path), "job": run.job, keys[0]: run.group[0], keys[1]: run.group[1],
            "seed": run.seed, "steps": progress["steps"], "total_steps": total, "metric": run.metric,
            **summarize(read_evaluations(run.path), run.metric), "wall_time": progress["wall_time"],
            "checkpoint": progress["checkpoint"], "status": status}


def table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as aligned text columns."""
    header = ("run", "what", "steps", "best eval", "last eval", "time", "status")
    lines = [header]
    for row in rows:
        what = f"{row['agent']}/{row['env']}" if "agent" in row else f"{row['net']}/{row['task']}"
        done = "-" if row["steps"] is None else f"{row['steps']:,}"
        steps = ("damaged checkpoint" if row["checkpoint"] == "damaged" else
                 f"{done} of {row['total_steps']:,}" if row["total_steps"] else f"{done} of ?")
        lines.append((row["name"], what, steps, _number(row["best"]), _number(row["last"]),
                      _duration(row["wall_time"]), row["status"]))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Print the table (or JSON) of the runs under the folder; returns the rows."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if not args.path.is_dir():
        raise UserError(f"{args.path} is not a directory: pass the folder holding your runs (rlkit runs runs/)")
    root = args.path.resolve()
    skipped: list[str] = []
    try:
        runs = find_runs([root], skipped)
    except UserError:
        if (root / "config.json").exists():
            raise  # the run directory named is unreadable
        runs = []  # an empty folder: an empty table, not an error
    rows = [describe(run, root) for run in runs]
    for reason in skipped:
        print(f"skipped: {reason}", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(table(rows) if rows else f"no runs in {args.path}")
    return rows
