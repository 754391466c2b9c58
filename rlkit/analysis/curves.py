"""Learning curves read from run directories, grouped and averaged over seeds (what ``rlkit plot`` draws and
``rlkit runs`` summarizes).

A run directory holds ``config.json`` (which job, env and agent or task and net, seed), ``eval.jsonl`` (one line per
evaluation) and TensorBoard event files (training scalars such as ``charts/episodic_return``). Everything here is a
pure function of those files.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from rlkit.errors import UserError

EVAL_METRICS = {"agent": "eval/mean_return", "classifier": "eval/accuracy", "gan": "eval/critic_class_accuracy",
                "video": "eval/top1", "selfplay": "eval/score"}
"""The evaluation metric that ranks a run of each job kind (higher is better)."""
TRAINING_RETURN = "charts/episodic_return"


@dataclass(frozen=True)
class RunInfo:
    """What ``config.json`` says about a run."""

    path: Path
    job: str
    group: tuple[str, str]
    """(env, agent) for agents, (task, net) for supervised runs: the runs averaged together are one group."""
    seed: int
    metric: str
    """The job's evaluation metric (see :data:`EVAL_METRICS`)."""
    settings: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.group[1]} on {self.group[0]}"


class Curve(NamedTuple):
    """One run's values of one metric, ``x`` ascending."""

    x: np.ndarray
    y: np.ndarray


class Band(NamedTuple):
    """Several runs' curves on one grid: their mean, standard deviation (over runs, ddof 0), minimum and maximum."""

    x: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    low: np.ndarray
    high: np.ndarray
    runs: int


class Scalars(NamedTuple):
    """One TensorBoard tag: ``step``, ``time`` (seconds of training) and ``value`` arrays, in the order written."""

    step: np.ndarray
    time: np.ndarray
    value: np.ndarray


# ---------------------------------------------------------------------- finding runs
def read_run(path: str | Path) -> RunInfo:
    """The run in directory ``path``, from its ``config.json``.

    Raises:
        UserError: no readable ``config.json`` there.
    """
    path = Path(path)
    try:
        header = json.loads((path / "config.json").read_text())
        settings = header["settings"]
        job = header.get("job", "agent")
        if "agent" in settings:
            group = (str(settings["env"]), str(settings["agent"]))
        else:
            group = (str(settings["task"]), str(settings["net"]))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UserError(f"{path} has no readable config.json ({type(error).__name__}: {error}): pass run directories "
                        "written by rlkit train") from None
    return RunInfo(path, job, group, int(settings.get("seed", 1)), EVAL_METRICS.get(job, ""), settings)


def find_runs(paths: Iterable[str | Path], skipped: list[str] | None = None) -> list[RunInfo]:
    """Every run in ``paths``: each is a run directory or a folder holding runs at any depth (a ``runs/`` folder).
    In a folder, a ``config.json`` that is not a run's is passed over, its reason appended to ``skipped``.

    Raises:
        UserError: a path does not exist or holds no run, or a run directory named in ``paths`` is unreadable.
    """
    found: list[RunInfo] = []
    for path in map(Path, paths):
        if not path.is_dir():
            raise UserError(f"{path} is not a directory: pass run directories or a folder of runs (such as runs/)")
        if (path / "config.json").exists():
            found.append(read_run(path))
            continue
        before = len(found)
        for run_dir in sorted(file.parent for file in path.rglob("config.json")):
            try:
                found.append(read_run(run_dir))
            except UserError as error:
                if skipped is not None:
                    skipped.append(str(error))
        if len(found) == before:
            raise UserError(f"no runs in {path} (no run's config.json at any depth): pass run directories written "
                            "by rlkit train")
    return found


def group_runs(runs: Iterable[RunInfo]) -> dict[tuple[str, str], list[RunInfo]]:
    """Runs by group, groups and runs in each sorted (by seed, then path)."""
    groups: dict[tuple[str, str], list[RunInfo]] = {}
    for run in runs:
        groups.setdefault(run.group, []).append(run)
    return {key: sorted(groups[key], key=lambda r: (r.seed, str(r.path))) for key in sorted(groups)}


# ---------------------------------------------------------------------- reading
def read_evaluations(run_dir: str | Path) -> list[dict[str, Any]]:
    """The lines of ``eval.jsonl``, by step; a malformed line (a kill while it was written) is passed over."""
    rows = []
    try:
        text = (Path(run_dir) / "eval.jsonl").read_text()
    except OSError:
        return []
    for line in text.splitlines():
        try:
            row = json.loads(line)
            row["step"] = int(row["step"])
        except (ValueError, KeyError, TypeError):
            continue
        rows.append(row)
    return sorted(rows, key=lambda row: row["step"])


def eval_curve(rows: Sequence[dict[str, Any]], metric: str) -> Curve:
    """``metric`` against the step from ``eval.jsonl`` rows (those without a finite value are left out)."""
    points = [(row["step"], float(row[metric])) for row in rows
              if isinstance(row.get(metric), (int, float)) and math.isfinite(row[metric])]
    return Curve(np.array([p[0] for p in points], dtype=float), np.array([p[1] for p in points], dtype=float))


def read_scalars(run_dir: str | Path) -> dict[str, Scalars]:
    """Every scalar in the run's TensorBoard event files, with the time in seconds of training.

    A resumed run writes a new event file that starts by purging the steps after its checkpoint (what the killed
    process logged past it), as TensorBoard does; its clock continues from the last step kept, so the pause between
    a stop and its resume is not counted.
    """
    # Imported here, not at the top: tensorboard takes a second to import and `rlkit runs` never needs it.
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.compat.proto.event_pb2 import SessionLog
    from tensorboard.util.tensor_util import make_ndarray

    rows: list[tuple[int, float, str, float]] = []  # (step, time, tag, value)
    for file in sorted(Path(run_dir).glob("events.out.tfevents.*"), key=_event_file_order):
        start, offset = None, max((row[1] for row in rows), default=0.0)
        try:
            for event in EventFileLoader(str(file)).Load():
                if start is None:
                    start = event.wall_time
                if event.HasField("session_log") and event.session_log.status == SessionLog.START:
                    rows = [row for row in rows if row[0] < event.step]
                    offset = max((row[1] for row in rows), default=0.0)
                for value in event.summary.value:
                    number = _scalar(value, make_ndarray)
                    if number is not None:
                        rows.append((event.step, offset + event.wall_time - start, value.tag, number))
        except Exception:  # noqa: BLE001 - a truncated last record (a killed writer): keep what was read
            pass
    by_tag: dict[str, list[tuple[int, float, str, float]]] = {}
    for row in rows:
        by_tag.setdefault(row[2], []).append(row)
    return {tag: Scalars(np.array([r[0] for r in tag_rows], dtype=float), np.array([r[1] for r in tag_rows]),
                         np.array([r[3] for r in tag_rows])) for tag, tag_rows in by_tag.items()}


def _event_file_order(file: Path) -> tuple[int, int, str]:
    """By the creation time in the name (``events.out.tfevents.TIME.HOST.PID.N``), then by N (one process's
    writers opened within a second)."""
    numbers = [int(part) if part.isdigit() else 0 for part in file.name.split(".")]
    return (numbers[3] if len(numbers) > 3 else 0, numbers[-1], file.name)


def _scalar(value: Any, make_ndarray: Any) -> float | None:
    kind = value.WhichOneof("value")
    if kind == "simple_value":
        return float(value.simple_value)
    if kind == "tensor":
        try:
            array = make_ndarray(value.tensor)
        except Exception:  # noqa: BLE001 - not a numeric tensor (text, hparams plugin data)
            return None
        if array.size == 1 and np.issubdtype(array.dtype, np.number):
            return float(array.reshape(()))
    return None


def run_curve(run: RunInfo, metric: str, x: str = "steps", window: int = 1,
              scalars: dict[str, Scalars] | None = None, evaluations: Sequence[dict[str, Any]] | None = None
              ) -> Curve | None:
    """One run's curve of ``metric``: from ``eval.jsonl`` when it holds the metric, else from TensorBoard
    (training scalars smoothed by a trailing mean of ``window`` values; evaluations, ``eval/...``, never).
    ``x``: ``steps`` or ``time`` (seconds of training; an evaluation's time is that of its TensorBoard event).
    None when the run has no such values."""
    if x not in ("steps", "time"):
        raise UserError(f"--x {x} is not known: use steps or time")
    rows = read_evaluations(run.path) if evaluations is None else evaluations
    if any(metric in row for row in rows):
        curve = eval_curve(rows, metric)
        if x == "time":
            scalars = read_scalars(run.path) if scalars is None else scalars
            times = dict(zip(scalars[metric].step, scalars[metric].time)) if metric in scalars else {}
            kept = [i for i, step in enumerate(curve.x) if step in times]
            curve = Curve(np.array([times[curve.x[i]] for i in kept]), curve.y[kept])
    else:
        scalars = read_scalars(run.path) if scalars is None else scalars
        if metric not in scalars:
            return None
        tag = scalars[metric]
        order = np.argsort(tag.step, kind="stable")
        values = tag.value[order] if metric.startswith("eval/") else smooth(tag.value[order], window)
        curve = Curve((tag.step if x == "steps" else tag.time)[order], values)
    return curve if len(curve.x) else None


# ---------------------------------------------------------------------- arithmetic
def smooth(values: Sequence[float] | np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average: element ``i`` is the mean of the last ``window`` values up to ``i`` (fewer at the
    start), so the curve neither shifts nor shortens."""
    values = np.asarray(values, dtype=float)
    if window < 1:
        raise UserError(f"--window must be at least 1, got {window}")
    if window == 1 or len(values) == 0:
        return values.copy()
    sums = np.cumsum(np.concatenate([[0.0], values]))
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - window, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


def aggregate(curves: Sequence[Curve]) -> Band:
    """Mean and spread of ``curves`` (one per seed) at each x of their common range: the union of their x values
    from the latest first x to the earliest last x, each curve linearly interpolated there. Curves evaluated at the
    same steps are averaged as they are.

    Raises:
        ValueError: no curves, or curves whose x ranges do not overlap.
    """
    if not curves:
        raise ValueError("no curves to aggregate")
    lo = max(float(c.x[0]) for c in curves)
    hi = min(float(c.x[-1]) for c in curves)
    if lo > hi:
        raise ValueError(f"the curves share no range of x (one starts at {lo:g}, another ends at {hi:g})")
    grid = np.unique(np.concatenate([c.x for c in curves]))
    grid = grid[(grid >= lo) & (grid <= hi)]
    ys = np.stack([np.interp(grid, c.x, c.y) for c in curves])
    return Band(grid, ys.mean(0), ys.std(0), ys.min(0), ys.max(0), len(curves))


def summarize(rows: Sequence[dict[str, Any]], metric: str) -> dict[str, Any]:
    """The best and last value of ``metric`` in ``eval.jsonl`` rows, with their steps (None when there is none)."""
    curve = eval_curve(rows, metric)
    if not len(curve.x):
        return {"best": None, "best_step": None, "last": None, "last_step": None, "evaluations": 0}
    best = int(np.argmax(curve.y))  # the first of equal bests: when it was first reached
    return {"best": float(curve.y[best]), "best_step": int(curve.x[best]), "last": float(curve.y[-1]),
            "last_step": int(curve.x[-1]), "evaluations": len(curve.x)}
