"""The one training loop: batches from a source, updates by a learner, and everything else done the same way for
every job (step counting, progress bar, TensorBoard, evaluation, atomic checkpoints, resume)."""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm import tqdm

from rlkit.checkpoint import CHECKPOINT_NAME, save_checkpoint
from rlkit.distributed import average_metrics, is_main
from rlkit.sources import Source


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
    """Show a progress bar."""


class Loop:
    """Drive ``learner`` with batches from ``source`` until ``config.total_steps``.

    Args:
        learner, source: the job.
        run_dir: where TensorBoard events, ``checkpoint.pt`` and ``eval.jsonl`` go.
        header: plain data stored at the top of every checkpoint (what ``evaluate.py`` needs to rebuild the job).
        evaluate: called with no arguments at evaluation time; returns metrics such as ``eval/mean_return``.
        save_extra: called at checkpoint time, for large state kept beside the checkpoint (a replay file).
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
    ):
        self.learner, self.source, self.config = learner, source, config
        self.run_dir = Path(run_dir)
        self.header = header
        self.evaluate_fn, self.save_extra = evaluate, save_extra
        self.wall_time = 0.0  # seconds of training before this process (carried over on resume)
        self.writer: Any = None
        self._start: float | None = None
        self._last_eval_step = self._last_save_step = -1

    # ------------------------------------------------------------------ state
    def checkpoint_payload(self) -> dict[str, Any]:
        return {
            **self.header,
            "learner": self.learner.state_dict(),
            "source": self.source.state_dict(),
            "loop": {"steps": self.source.steps, "wall_time": self.wall_time + self._elapsed()},
            "torch_rng": torch.get_rng_state(),
        }

    def restore(self, checkpoint: dict[str, Any]) -> None:
        """Continue from a checkpoint written by :meth:`save`."""
        self.learner.load_state_dict(checkpoint["learner"])
        self.source.load_state_dict(checkpoint["source"])
        self.wall_time = checkpoint["loop"]["wall_time"]
        torch.set_rng_state(checkpoint["torch_rng"])

    def save(self) -> None:
        if self.source.steps == self._last_save_step or not is_main():  # under torchrun the first process saves
            return
        self._last_save_step = self.source.steps
        if self.save_extra is not None:
            self.save_extra(self.run_dir)
        save_checkpoint(self.run_dir / CHECKPOINT_NAME, self.checkpoint_payload())

    # ------------------------------------------------------------------ running
    def _elapsed(self) -> float:
        return 0.0 if self._start is None else time.perf_counter() - self._start

    def _evaluate(self, step: int) -> None:
        if self.evaluate_fn is None or step == self._last_eval_step or not is_main():
            return
        self._last_eval_step = step
        metrics = self.evaluate_fn()
        for tag, value in metrics.items():
            self.writer.add_scalar(tag, value, step)
        with open(self.run_dir / "eval.jsonl", "a") as f:
            f.write(json.dumps({"step": step, **metrics}) + "\n")

    def run(self) -> None:
        """Train to ``total_steps``; Ctrl-C saves a checkpoint before leaving."""
        from torch.utils.tensorboard import SummaryWriter

        cfg = self.config
        main = is_main()
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(str(self.run_dir)) if main else _NoWriter()
        self._start = time.perf_counter()
        sums: dict[str, float] = defaultdict(float)
        counts: dict[str, int] = defaultdict(int)  # per tag: some metrics come only from some updates
        start_steps = last_log_steps = self.source.steps
        last_log_time = time.perf_counter()
        next_eval = _next_multiple(self.source.steps, cfg.eval_interval)
        next_ckpt = _next_multiple(self.source.steps, cfg.checkpoint_interval)
        bar = tqdm(total=cfg.total_steps, initial=start_steps, unit="step", disable=not (cfg.progress and main),
                   dynamic_ncols=True, smoothing=0.05)
        try:
            while self.source.steps < cfg.total_steps:
                before = self.source.steps
                batch = self.source.next()
                if batch is not None:
                    for tag, value in self.learner.update(batch).items():
                        sums[tag] += value
                        counts[tag] += 1
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
                if step >= next_eval:
                    self._evaluate(step)
                    next_eval = _next_multiple(step, cfg.eval_interval)
                if step >= next_ckpt:
                    self.save()
                    next_ckpt = _next_multiple(step, cfg.checkpoint_interval)
        except KeyboardInterrupt:
            bar.close()
            self.save()
            self.writer.close()
            if main:
                print(f"\ninterrupted at step {self.source.steps}: checkpoint saved; continue with --resume "
                      f"{self.run_dir}")
            raise
        finally:
            self.source.close()  # a source with worker processes stops them, whatever happened
        bar.close()
        self.save()
        self._evaluate(self.source.steps)
        self.writer.close()


class _NoWriter:
    """Stands in for TensorBoard's writer on the processes that do not write (all but the first under torchrun)."""

    def add_scalar(self, *args: Any, **kwargs: Any) -> None:
        pass

    def add_image(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


def _next_multiple(step: int, interval: int) -> float:
    """The first multiple of ``interval`` after ``step`` (never, for interval 0)."""
    return math.inf if interval <= 0 else (step // interval + 1) * interval
