"""Learning-curve figures: one row per env (or task), one panel per metric, one line per agent (or net) with its
spread over seeds. Drawn on a bare :class:`matplotlib.figure.Figure` (the Agg renderer, no display, no pyplot state)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter

from rlkit.analysis.curves import (TRAINING_RETURN, Band, RunInfo, aggregate, group_runs, read_evaluations,
                                   read_scalars, run_curve)
from rlkit.errors import UserError


@dataclass
class Line:
    """One group's band on one panel."""

    group: tuple[str, str]
    metric: str
    band: Band
    runs: list[RunInfo]


def default_metrics(runs: Sequence[RunInfo]) -> list[str]:
    """The evaluation metric of each job kind among ``runs``, then agents' training returns."""
    metrics = [run.metric for run in runs if run.metric]
    if any(run.job == "agent" for run in runs):
        metrics.append(TRAINING_RETURN)
    return list(dict.fromkeys(metrics))


def collect_lines(runs: Sequence[RunInfo], metrics: Sequence[str] | None = None, x: str = "steps",
                  window: int = 10) -> list[Line]:
    """The bands to draw: per group and metric (``metrics``, or :func:`default_metrics` of each env's runs), the
    runs that have the metric, averaged.

    Raises:
        UserError: no run has any of the metrics, or a group's runs share no range of x.
    """
    lines = []
    for group, members in group_runs(runs).items():
        cache = {run.path: (read_evaluations(run.path), read_scalars(run.path)) for run in members}
        for metric in metrics or default_metrics(members):
            curves = {run.path: run_curve(run, metric, x, window, scalars=cache[run.path][1],
                                          evaluations=cache[run.path][0]) for run in members}
            have = [run for run in members if curves[run.path] is not None]
            if not have:
                continue
            try:
                band = aggregate([curves[run.path] for run in have])
            except ValueError as error:
                raise UserError(f"{group[1]} on {group[0]}, {metric}: {error}; plot those runs separately") from None
            lines.append(Line(group, metric, band, have))
    if not lines:
        wanted = ", ".join(metrics) if metrics else "their evaluation or training returns"
        raise UserError(f"the runs have no values of {wanted} yet: train longer, or name a metric they log with "
                        "--metric (a TensorBoard tag or an eval.jsonl key)")
    return lines


def draw(lines: Sequence[Line], out: str | Path, x: str = "steps", band: str = "std", title: str = "") -> Path:
    """Write the figure of ``lines`` to ``out`` (PNG, or any format matplotlib knows by the suffix).
    ``band``: ``std`` shades mean ± one standard deviation over seeds, ``minmax`` the range from the worst to the
    best seed."""
    if band not in ("std", "minmax"):
        raise UserError(f"--band {band} is not known: use std or minmax")
    rows = list(dict.fromkeys(line.group[0] for line in lines))
    panels = {row: list(dict.fromkeys(line.metric for line in lines if line.group[0] == row)) for row in rows}
    cols = max(len(metrics) for metrics in panels.values())
    fig = Figure(figsize=(5.5 * cols, 3.8 * len(rows)), layout="constrained")
    axes = fig.subplots(len(rows), cols, squeeze=False)
    scale, unit = _time_scale(lines) if x == "time" else (1.0, "")
    for r, row in enumerate(rows):
        for c in range(cols):
            ax = axes[r][c]
            if c >= len(panels[row]):
                ax.set_axis_off()
                continue
            metric = panels[row][c]
            for line in lines:
                if line.group[0] != row or line.metric != metric:
                    continue
                b = line.band
                low, high = (b.mean - b.std, b.mean + b.std) if band == "std" else (b.low, b.high)
                seeds = f"{b.runs} seed{'s' if b.runs > 1 else ''}"
                drawn = ax.plot(b.x / scale, b.mean, label=f"{line.group[1]} ({seeds})", lw=1.6)
                if b.runs > 1:
                    ax.fill_between(b.x / scale, low, high, color=drawn[0].get_color(), alpha=0.2, lw=0)
            ax.set_title(f"{row}: {metric}")
            ax.set_xlabel(f"training time ({unit})" if x == "time" else _step_label(lines, row))
            if x == "steps":
                ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 20k, 1.5M
            ax.grid(alpha=0.3)
            ax.legend(loc="best", fontsize="small")
    spread = "mean ± std over seeds" if band == "std" else "mean, min to max over seeds"
    fig.suptitle(title or f"learning curves ({spread})")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(out, dpi=110)
    except (OSError, ValueError) as error:
        raise UserError(f"cannot write {out} ({error}): pick another --out (a .png file)") from None
    return out


def _step_label(lines: Sequence[Line], row: str) -> str:
    jobs = {run.job for line in lines if line.group[0] == row for run in line.runs}
    return "env steps" if jobs == {"agent"} else "updates" if "agent" not in jobs else "steps"


def _time_scale(lines: Sequence[Line]) -> tuple[float, str]:
    longest = max(float(np.max(line.band.x)) for line in lines)
    return (3600.0, "hours") if longest > 3 * 3600 else (60.0, "minutes") if longest > 180 else (1.0, "seconds")
