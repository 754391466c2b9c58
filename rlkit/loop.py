"""The one training loop: batches from a source, updates by a learner, and everything else done the same way for
every job (step counting, progress bar, TensorBoard, evaluation, atomic checkpoints, resume, signals).

SIGINT, SIGTERM and SIGHUP (Ctrl-C, ``docker stop``, cluster schedulers, ``timeout``) are deferred to the end of the
iteration in progress: the loop then saves a checkpoint of that boundary state, says whether it did, and raises
:class:`Interrupted`; a second signal leaves at once without saving. A source that cannot go on (a parameter
server's worker died) raises :class:`rlkit.errors.SourceLost` before taking a batch: the loop saves that boundary
state too and raises it again with where the run can be resumed.

Metrics whose tag ends in ``_max`` are logged as their maximum over the log interval, the others as their mean."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import signal
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from tqdm import tqdm

from rlkit.checkpoint import CHECKPOINT_NAME, non_finite_tensors, save_checkpoint, temporary_path
from rlkit.distributed import average_metrics, is_main, world
from rlkit.errors import BadEnvOutput, SourceLost, UserError
from rlkit.sources import Source

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
BEST_NAME = "best.pt"
"""Beside ``checkpoint.pt``: the checkpoint of the best evaluation so far (by :attr:`LoopConfig.best_metric`)."""
STAGING_DIR = ".saving"
"""Inside the run directory: where ``save_extra`` writes (a replay file) before it is moved beside the checkpoint."""


class Interrupted(KeyboardInterrupt):
    """The run stopped on a signal; ``saved`` tells whether a checkpoint of the stopping step was written.
    A command line exits with ``exit_code`` (128 + the signal's number: 130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, signum: int, saved: bool, reported: bool = False):
        super().__init__(signal.Signals(signum).name)
        self.signum, self.saved, self.reported = signum, saved, reported
        self.exit_code = 128 + signum


UNDEFINED_OK = frozenset({"losses/explained_variance"})
"""Metrics under ``losses/`` that are NaN by definition in some batches (a rollout of constant returns), not
because training diverged."""


class Diverged(UserError):
    """A loss, gradient norm or parameter became NaN or infinite: the run stops and the last good checkpoint stays."""


class CheckpointError(UserError):
    """The checkpoint could not be written (a full disk, a read-only directory); the previous one is intact."""


class Learner(Protocol):
    def update(self, batch: Any) -> dict[str, float]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class LoopConfig:
    """When the loop logs, evaluates and saves."""

    total_steps: int
    """Stop after this many steps."""
    eval_interval: int = 0
    """Steps between evaluations (0: only at the end)."""
    checkpoint_interval: int = 0
    """Steps between checkpoints (0: only at the end)."""
    log_interval: int = 1_000
    """Steps between TensorBoard writes of the update metrics and speed."""
    progress: bool = True
    """Show a progress bar; without it each evaluation prints a line."""
    best_metric: str | None = None
    """The evaluation metric (higher is better) whose best value keeps a copy of the checkpoint in ``best.pt``."""
    autocast: str | None = None
    """The device type (``cpu``, ``cuda``) whose updates run under bf16 autocast (:func:`rlkit.runtime.update_autocast`,
    ``--precision``); None: fp32."""


class Callback:
    """Hooks into a run; override what you need. ``on_step`` and ``on_evaluation`` may return False to stop the run
    early: the loop then saves, prints its summary and returns (the run can be resumed like any other)."""

    def on_step(self, loop: Loop, step: int) -> bool | None:
        """After each turn of the source and the learner's update on it (``step``: the step count now)."""

    def on_evaluation(self, loop: Loop, step: int, metrics: dict[str, float]) -> bool | None:
        """After each evaluation, with its metrics (``eval/mean_return`` for agents)."""

    def on_checkpoint(self, loop: Loop, step: int, path: Path) -> None:
        """After a checkpoint of ``step`` is on disk at ``path`` (``checkpoint.pt`` or ``best.pt``)."""


class StopOnReward(Callback):
    """Stop once an evaluation's ``metric`` reaches ``threshold`` (SB3's StopTrainingOnRewardThreshold)."""

    def __init__(self, threshold: float, metric: str = "eval/mean_return"):
        self.threshold, self.metric = threshold, metric

    def on_evaluation(self, loop: Loop, step: int, metrics: dict[str, float]) -> bool:
        return not metrics.get(self.metric, -math.inf) >= self.threshold


class Loop:
    """Drive ``learner`` with batches from ``source`` until ``config.total_steps``.

    Args:
        learner, source: the job.
        run_dir: where TensorBoard events, ``checkpoint.pt`` and ``eval.jsonl`` go.
        header: plain data stored at the top of every checkpoint (what ``evaluate.py`` needs to rebuild the job).
        evaluate: called with no arguments at evaluation time; returns metrics such as ``eval/mean_return``.
        save_extra: called at checkpoint time, for large state kept beside the checkpoint (a replay file).
        callbacks: :class:`Callback` objects, called in order (``loop.callbacks`` may be extended before ``run``).
    """

    def __init__(
        self,
        learner: Learner,
        source: Source,
        config: LoopConfig,
        run_dir: str | Path,
        header: dict[str, Any],
        evaluate: Callable[[], dict[str, float]] | None = None,
        save_extra: Callable[[Path], None] | None = None,
        callbacks: list[Callback] | None = None,
    ):
        self.learner, self.source, self.config = learner, source, config
        self.callbacks: list[Callback] = list(callbacks or [])
        self.run_dir = Path(run_dir)
        self.header = header
        self.evaluate_fn, self.save_extra = evaluate, save_extra
        self.wall_time = 0.0  # seconds of training before this process (carried over on resume)
        self.writer: Any = None
        self._start: float | None = None
        self._last_eval_step = -1
        self._saved_step: int | None = None  # the step of the checkpoint on disk (None: none yet)
        self._signal: int | None = None  # a stop signal received, acted on at the next iteration boundary
        self.best: dict[str, Any] | None = None
        """The best evaluation so far, ``{"step", "value"}`` of :attr:`LoopConfig.best_metric` (kept in checkpoints)."""
        self.last_evaluation: dict[str, float] | None = None
        self.stopped_early = False
        """True when a callback ended the run before ``total_steps``."""

    # ------------------------------------------------------------------ state
    def checkpoint_payload(self) -> dict[str, Any]:
        return {
            **self.header,
            "learner": self.learner.state_dict(),
            "source": self.source.state_dict(),
            "loop": {"steps": self.source.steps, "wall_time": self.wall_time + self._elapsed(),
                     "total_steps": self.config.total_steps,  # what `rlkit runs` calls finished
                     **({"best": dict(self.best)} if self.best is not None else {})},
            "torch_rng": torch.get_rng_state(),
        }

    def restore(self, checkpoint: dict[str, Any]) -> None:
        """Continue from a checkpoint written by :meth:`save`."""
        self.learner.load_state_dict(checkpoint["learner"])
        self.source.load_state_dict(checkpoint["source"])
        self.wall_time = checkpoint["loop"]["wall_time"]
        torch.set_rng_state(checkpoint["torch_rng"])
        self._saved_step = checkpoint["loop"]["steps"]
        self.best = _valid_best(checkpoint["loop"].get("best"))

    def save(self) -> bool:
        """Checkpoint the current step (once); True when it is on disk. Under torchrun the first process saves.

        Raises:
            Diverged: the learner's state holds NaN or infinity; the checkpoint on disk is left as it was.
        """
        if not is_main() or self.source.steps == self._saved_step:
            return True
        payload = self._finite_payload()
        # The extra files (replay) are written first, into a staging folder, and moved beside the checkpoint only
        # after it is committed: a kill at any moment leaves them as old as the checkpoint or older, never newer.
        stage = self.run_dir / STAGING_DIR
        try:
            if self.save_extra is not None:
                shutil.rmtree(stage, ignore_errors=True)
                stage.mkdir(parents=True)
                self.save_extra(stage)
            save_checkpoint(self.run_dir / CHECKPOINT_NAME, payload)
            if self.save_extra is not None:
                for file in sorted(stage.iterdir()):
                    os.replace(file, self.run_dir / file.name)
        except (OSError, RuntimeError) as error:  # torch's zip writer reports a full disk as a RuntimeError
            kept = ("no checkpoint was written yet" if self._saved_step is None else
                    f"the checkpoint at step {self._saved_step} is intact")
            raise CheckpointError(f"could not write a checkpoint in {self.run_dir} ({_first_line(error)}): free disk "
                                  f"space or pick another --run-dir; {kept}") from None
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        # Only now: an interrupted write must not count as saved (the stop would then skip it and claim it saved).
        self._saved_step = self.source.steps
        for callback in self.callbacks:
            callback.on_checkpoint(self, self.source.steps, self.run_dir / CHECKPOINT_NAME)
        return True

    def _finite_payload(self) -> dict[str, Any]:
        """The checkpoint payload, or :class:`Diverged` when the learner's state holds NaN or infinity."""
        payload = self.checkpoint_payload()
        bad = next(non_finite_tensors(payload["learner"], "learner"), None)
        if bad is not None:
            raise self._diverged(f"{bad[0]} holds {bad[1]}")
        return payload

    def _save_best(self, step: int, value: float) -> None:
        """Copy the current state to ``best.pt`` (replay stays beside ``checkpoint.pt`` only: best.pt is for
        evaluating). A non-finite state is never written, here as in :meth:`save`."""
        payload = self._finite_payload()
        best = {"step": step, "metric": self.config.best_metric, "value": value}
        payload["loop"]["best"] = best
        try:
            save_checkpoint(self.run_dir / BEST_NAME, {**payload, "best": best})
        except (OSError, RuntimeError) as error:
            raise CheckpointError(f"could not write {BEST_NAME} in {self.run_dir} ({_first_line(error)}): free disk "
                                  "space or pick another --run-dir") from None
        self.best = best
        for callback in self.callbacks:
            callback.on_checkpoint(self, step, self.run_dir / BEST_NAME)

    def _diverged(self, what: str) -> Diverged:
        kept = ("no checkpoint was written" if self._saved_step is None else
                f"the checkpoint at step {self._saved_step} in {self.run_dir} is kept")
        return Diverged(f"training diverged at step {self.source.steps}: {what}; {kept}: lower the learning rate or "
                        "check the inputs")

    def _kept(self) -> str:
        """Where a resume would continue from, for messages."""
        if self._saved_step is None:
            return "no checkpoint was written"
        return f"--resume {self.run_dir} continues from the checkpoint at step {self._saved_step}"

    # ------------------------------------------------------------------ signals
    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._signal is not None:
            raise Interrupted(signum, saved=False)  # a second signal: leave now
        self._signal = signum

    def _install_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}  # only the main thread may set handlers (signals are delivered there anyway)
        previous = {}
        for signum in STOP_SIGNALS:
            previous[signum] = signal.signal(signum, self._on_signal)
        return previous

    def _stop(self, signum: int) -> None:
        """At an iteration boundary after a signal: save, say so only if it was saved, and raise Interrupted."""
        try:
            saved, why = self.save(), ""
        except Exception as error:  # noqa: BLE001 - reported on the line below; the run is stopping anyway
            saved, why = False, _first_line(error)
        if world()[1] > 1:
            dist.barrier()  # no process leaves (torchrun would then end the others) before the checkpoint is written
        if is_main():
            name = signal.Signals(signum).name
            if saved:
                print(f"\ninterrupted ({name}) at step {self.source.steps}: checkpoint saved; continue with --resume "
                      f"{self.run_dir}")
            else:
                print(f"\ninterrupted ({name}) at step {self.source.steps}: the checkpoint could not be saved ({why}); "
                      f"{self._kept()}")
        raise Interrupted(signum, saved, reported=True)

    # ------------------------------------------------------------------ running
    def _elapsed(self) -> float:
        return 0.0 if self._start is None else time.perf_counter() - self._start

    def _evaluate(self, step: int) -> bool:
        """Evaluate at ``step`` (once); False when a callback asks the run to stop."""
        if self.evaluate_fn is None or step == self._last_eval_step or not is_main():
            return True
        self._last_eval_step = step
        began = time.perf_counter()
        metrics = self.evaluate_fn()
        spent = time.perf_counter() - began
        self.last_evaluation = {"step": step, **metrics}
        for tag, value in metrics.items():
            self.writer.add_scalar(tag, value, step)
        with open(self.run_dir / "eval.jsonl", "a") as f:
            f.write(json.dumps({"step": step, "wall_time": round(self.wall_time + self._elapsed(), 3),
                                "eval_seconds": round(spent, 3), **metrics}) + "\n")
        value = metrics.get(self.config.best_metric) if self.config.best_metric else None
        if value is not None and math.isfinite(value) and (self.best is None or value > self.best["value"]):
            self._save_best(step, value)
        if not self.config.progress:
            print(f"step {step}/{self.config.total_steps}: {_format_metrics(metrics)}"
                  + (f" (best {self.best['value']:.4g} at step {self.best['step']})" if self.best else ""), flush=True)
        keep_going = True
        for callback in self.callbacks:
            keep_going = callback.on_evaluation(self, step, metrics) is not False and keep_going
        return keep_going

    def _write_hparams(self) -> None:
        """The run's settings and config in TensorBoard's HPARAMS tab, beside the best metric, to compare runs."""
        from torch.utils.tensorboard.summary import hparams

        flat = {key: value if isinstance(value, (int, float, str, bool)) else str(value)
                for section in ("settings", "config") for key, value in _flatten(self.header.get(section, {}))}
        metric = self.config.best_metric or "eval/mean_return"
        for summary in hparams(flat, {metric: math.nan}):
            self.writer.file_writer.add_summary(summary)

    def _summary(self) -> str:
        """The line a finished (or early-stopped) run ends with."""
        seconds = self.wall_time + self._elapsed()
        how = "stopped early by a callback" if self.stopped_early else "finished"
        line = f"{how} at step {self.source.steps} after {_format_duration(seconds)} of training"
        if self.last_evaluation is not None:
            metrics = {k: v for k, v in self.last_evaluation.items() if k != "step"}
            line += f"; last evaluation {_format_metrics(metrics)}"
        if self.best is not None:
            line += f"; best {self.best['value']:.4g} at step {self.best['step']} ({self.run_dir / BEST_NAME})"
        return line

    def run(self, close: bool = True) -> None:
        """Train to ``total_steps``. A stop signal ends the iteration in progress, saves and raises
        :class:`Interrupted`. ``close=False`` keeps the source (its envs, its replay) open, so that ``run`` may be
        called again after raising ``config.total_steps`` (the Python API's repeated ``learn``)."""
        from torch.utils.tensorboard import SummaryWriter

        cfg = self.config
        main = is_main()
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            remove_leftovers(self.run_dir)
        resumed_at = self.source.steps
        if hasattr(self.source, "stop_at"):  # a source that steps ahead in a thread stops at the run's end
            self.source.stop_at = cfg.total_steps
        if main and resumed_at:
            drop_later_evaluations(self.run_dir / "eval.jsonl", resumed_at)
        # A resumed run hides what a killed process logged after its checkpoint: those steps are played again.
        if main and resumed_at:
            wait_for_a_later_event_file_name(self.run_dir)
        self.writer = (SummaryWriter(str(self.run_dir), purge_step=resumed_at + 1 if resumed_at else None) if main
                       else _NoWriter())
        if main and not resumed_at:
            self._write_hparams()
        self._start = time.perf_counter()
        sums: dict[str, float] = defaultdict(float)
        counts: dict[str, int] = defaultdict(int)  # per tag: some metrics come only from some updates
        start_steps = last_log_steps = self.source.steps
        last_log_time = time.perf_counter()
        next_eval = _next_multiple(self.source.steps, cfg.eval_interval)
        next_ckpt = _next_multiple(self.source.steps, cfg.checkpoint_interval)
        bar = tqdm(total=cfg.total_steps, initial=start_steps, unit="step", disable=not (cfg.progress and main),
                   dynamic_ncols=True, smoothing=0.05)
        self._signal = None
        self.stopped_early = False
        in_update = False
        distributed = world()[1] > 1
        updating = ((lambda: torch.autocast(cfg.autocast, dtype=torch.bfloat16)) if cfg.autocast
                    else contextlib.nullcontext)
        previous_handlers = self._install_handlers()
        try:
            while self.source.steps < cfg.total_steps:
                before = self.source.steps
                in_update = True
                batch = self.source.next()
                if batch is not None:
                    with updating():
                        metrics = self.learner.update(batch)
                    for tag, value in metrics.items():
                        if not math.isfinite(value) and tag.startswith("losses/") and tag not in UNDEFINED_OK:
                            raise self._diverged(f"{tag} is {value}")
                        if tag.endswith("_max"):  # the largest over the interval, not the mean
                            sums[tag], counts[tag] = max(sums.get(tag, -math.inf), value), 1
                        else:
                            sums[tag] += value
                            counts[tag] += 1
                in_update = False
                step = self.source.steps
                bar.update(step - before)
                for finished_step, episode_return, length in self.source.pop_finished():
                    self.writer.add_scalar("charts/episodic_return", episode_return, finished_step)
                    self.writer.add_scalar("charts/episodic_length", length, finished_step)
                if step - last_log_steps >= cfg.log_interval:
                    now = time.perf_counter()
                    sps = (step - last_log_steps) / max(now - last_log_time, 1e-9)
                    means = average_metrics({tag: total / counts[tag] for tag, total in sums.items()})
                    for tag, value in means.items():
                        self.writer.add_scalar(tag, value, step)
                    self.writer.add_scalar("time/sps", sps, step)
                    recent = self.source.recent_returns
                    postfix = {"sps": f"{sps:.0f}"}
                    if recent:
                        postfix["return"] = f"{sum(recent) / len(recent):.1f}"
                    bar.set_postfix(postfix, refresh=False)
                    sums.clear()
                    counts.clear()
                    last_log_steps, last_log_time = step, now
                keep_going = True
                for callback in self.callbacks:
                    keep_going = callback.on_step(self, step) is not False and keep_going
                if step >= next_eval:
                    keep_going = self._evaluate(step) and keep_going
                    next_eval = _next_multiple(step, cfg.eval_interval)
                if step >= next_ckpt:
                    self.save()
                    next_ckpt = _next_multiple(step, cfg.checkpoint_interval)
                if not keep_going:
                    self.stopped_early = True
                    break
                # The iteration is complete: a consistent state to save. Under torchrun every process stops at the
                # same iteration (the signal reaches them at different moments; a process left behind would hang in
                # its next collective).
                stop = _max_over_processes(self._signal or 0) if distributed else self._signal
                if stop:
                    bar.close()
                    failure = getattr(self.source, "failure", lambda: None)()
                    if failure is not None:  # the signal came because the source failed (torchrun's reply to it)
                        raise SourceLost(failure)
                    self._stop(stop)
            bar.close()
            self.save()
            if not self.stopped_early:
                self._evaluate(self.source.steps)
            if main:
                print(self._summary(), flush=True)
        except BadEnvOutput as bad:
            bar.close()
            raise BadEnvOutput(f"{bad}; {self._kept()}") from None
        except SourceLost as lost:
            # Raised by source.next() before it took anything: the state is that of the last complete step.
            bar.close()
            try:
                self.save()
                kept = f"checkpoint saved: --resume {self.run_dir} continues from step {self.source.steps}"
            except UserError as error:
                kept = f"the checkpoint could not be saved ({error})"
            ended = SourceLost(f"{lost}; {kept}")
            if main:  # said here, under the loop's signal handlers: torchrun's stop signal may be on its way
                print(f"error: {ended}", file=sys.stderr, flush=True)
                ended.reported = True
            raise ended from None
        except Interrupted as stop:
            bar.close()
            if main and not stop.reported:  # a second signal: whatever was in progress (a save too) is abandoned
                print(f"\ninterrupted again ({signal.Signals(stop.signum).name}) at step {self.source.steps}: "
                      f"leaving without saving; {self._kept()}")
            raise
        except KeyboardInterrupt:
            # Raised by code, not by a signal this loop defers (no handler outside the main thread): saved only
            # between a batch's update and the next batch, since mid-update a resume would skip or half-apply it.
            bar.close()
            if in_update:
                if main:
                    print(f"\ninterrupted at step {self.source.steps} in the middle of an update: not saved; "
                          f"{self._kept()}")
                raise
            self._signal = signal.SIGINT
            self._stop(signal.SIGINT)
        finally:
            try:
                self.writer.close()  # flush TensorBoard however the run ends
                self.wall_time, self._start = self.wall_time + self._elapsed(), None
                if close:
                    self.source.close()  # a source with worker processes stops them, whatever happened
            finally:
                # Last: a stop signal while closing (torchrun sends one to every process when one fails) must not
                # kill the process before it says why the run ended.
                for signum, handler in previous_handlers.items():
                    signal.signal(signum, handler)


def _valid_best(best: Any) -> dict[str, Any] | None:
    """The checkpoint's record of the best evaluation, or None for a missing or malformed one (a stranger's file
    must not crash the loop: at worst the next evaluation starts the record again)."""
    if (isinstance(best, dict) and isinstance(best.get("step"), int) and isinstance(best.get("value"), (int, float))
            and math.isfinite(best["value"])):
        return {"step": best["step"], "metric": str(best.get("metric")), "value": float(best["value"])}
    return None


def _flatten(mapping: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if not isinstance(mapping, dict):
        return [(prefix, mapping)] if prefix else []
    items: list[tuple[str, Any]] = []
    for key, value in mapping.items():
        items.extend(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return items


def _format_metrics(metrics: dict[str, float]) -> str:
    """``mean_return 195.3 ± 12.1, ...``: the ``eval/`` prefix dropped, a std shown beside its mean."""
    shown = {key.removeprefix("eval/"): value for key, value in metrics.items()}
    parts = []
    for key, value in shown.items():
        if key.startswith("std_") and f"mean_{key[4:]}" in shown:
            continue
        std = shown.get(f"std_{key[5:]}") if key.startswith("mean_") else None
        parts.append(f"{key} {value:.4g}" + (f" ± {std:.3g}" if std is not None else ""))
    return ", ".join(parts)


def _format_duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def drop_later_evaluations(path: Path, step: int) -> None:
    """Keep the lines of ``eval.jsonl`` up to ``step`` (a run resumed there evaluates the later steps again)."""
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if _step_of(line) is None or _step_of(line) <= step]
    if len(kept) != len(lines):
        path.write_text("".join(kept))


def wait_for_a_later_event_file_name(run_dir: Path) -> None:
    """Sleep until a new TensorBoard event file in ``run_dir`` sorts after every one already there.

    TensorBoard reads a run's event files in name order, and the name starts with the creation time in whole
    seconds, then host, process id and a counter compared as text. A run resumed within the second its files were
    written (an automatic restart after a crash) could otherwise be read before them, so its purge of the replayed
    steps would be undone."""
    stamps = [int(match.group(1)) for path in run_dir.glob("events.out.tfevents.*")
              if (match := re.match(r"events\.out\.tfevents\.(\d+)\.", path.name))]
    ahead = max(stamps, default=-1) - int(time.time())
    if 0 <= ahead <= 2:  # further ahead is a clock set back: waiting would not help
        time.sleep(max(stamps) + 1 - time.time())


def _step_of(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None


class _NoWriter:
    """Stands in for TensorBoard's writer on the processes that do not write (all but the first under torchrun)."""

    def add_scalar(self, *args: Any, **kwargs: Any) -> None:
        pass

    def add_image(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


def remove_leftovers(run_dir: Path) -> None:
    """Delete what a killed save left in ``run_dir`` (its process owns the directory: see :mod:`rlkit.runlock`):
    the staging folder and the temporary files, including the randomly named ones of rlkit before 2026-12."""
    shutil.rmtree(run_dir / STAGING_DIR, ignore_errors=True)
    for leftover in [temporary_path(run_dir / CHECKPOINT_NAME), *run_dir.glob(f".{CHECKPOINT_NAME}.*.tmp"),
                     *run_dir.glob("*.tmp.npz")]:
        leftover.unlink(missing_ok=True)


def _max_over_processes(value: int) -> int:
    flag = torch.tensor([value], dtype=torch.int64)
    if dist.get_backend() == "nccl":
        flag = flag.cuda()
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item())


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def _next_multiple(step: int, interval: int) -> float:
    """The first multiple of ``interval`` after ``step`` (never, for interval 0)."""
    return math.inf if interval <= 0 else (step // interval + 1) * interval
