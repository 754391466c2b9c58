"""Learning curves of runs as a PNG: ``rlkit plot runs/ --out curves.png``.

Each RUN_DIR is a run directory or a folder of runs (searched at any depth). Runs of the same env and agent (task
and net for supervised runs) are one line: the mean over their seeds with a shaded spread. By default each env gets
a row with the evaluation returns (``eval.jsonl``) and the training episodes' returns (TensorBoard's
``charts/episodic_return``, smoothed over ``--window`` episodes); supervised runs show their evaluation metric.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rlkit.analysis.curves import find_runs
from rlkit.analysis.plots import collect_lines, draw
from rlkit.errors import OneLineParser, UserError
from rlkit.config import whole_number


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", type=Path, metavar="RUN_DIR", help="run directories or folders of runs")
    parser.add_argument("--x", choices=("steps", "time"), default="steps",
                        help="x axis: steps, or time (seconds of training, pauses between a stop and its resume left "
                             "out) (default: steps)")
    parser.add_argument("--out", type=Path, default=Path("curves.png"), metavar="FILE",
                        help="the image to write (default: curves.png)")
    parser.add_argument("--metric", action="append", metavar="TAG",
                        help="what to plot, one panel each (repeat the flag for more): an eval.jsonl key "
                             "(eval/mean_return) or a TensorBoard tag (charts/episodic_return, losses/td_loss) "
                             "(default: the evaluation metric and, for agents, charts/episodic_return)")
    parser.add_argument("--window", type=whole_number, default=10,
                        help="training curves (not evaluations) are averaged over this many values (default: 10)")
    parser.add_argument("--band", choices=("std", "minmax"), default="std",
                        help="the shaded spread over seeds: mean ± std, or min to max (default: std)")
    parser.add_argument("--title", default="", help="the figure's title")
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Write the figure; print one line per line drawn and the file's path. Returns them as a dict."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.window < 1:
        raise UserError(f"--window must be at least 1, got {args.window}")
    skipped: list[str] = []
    runs = find_runs(args.paths, skipped)
    for reason in skipped:
        print(f"skipped: {reason}", file=sys.stderr)
    lines = collect_lines(runs, args.metric, args.x, args.window)
    out = draw(lines, args.out, args.x, args.band, args.title)
    summary = []
    for line in lines:
        b = line.band
        summary.append({"env": line.group[0], "agent": line.group[1], "metric": line.metric, "runs": b.runs,
                        "last_x": float(b.x[-1]), "last_mean": float(b.mean[-1]), "last_std": float(b.std[-1]),
                        "last_min": float(b.low[-1]), "last_max": float(b.high[-1])})
        print(f"{line.group[1]} on {line.group[0]}, {line.metric}: {b.runs} run(s), at {args.x} {b.x[-1]:g}: mean "
              f"{b.mean[-1]:.4g} ± {b.std[-1]:.3g} (min {b.low[-1]:.4g}, max {b.high[-1]:.4g})")
    print(f"wrote {out}")
    return {"path": str(out), "lines": summary}
