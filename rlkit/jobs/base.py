"""The job contract: how one kind of run (an agent, a classifier, a GAN, a video classifier) is configured,
assembled, rebuilt from its checkpoint and reported on. ``train.py`` and ``evaluate.py`` only call these methods."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar


from rlkit.checkpoint import CHECKPOINT_NAME, non_finite_tensors
from rlkit.config import config_from_dict, config_to_dict, whole_number
from rlkit.distributed import ALLREDUCES, DISTRIBUTED, is_main
from rlkit.errors import UserError
from rlkit.hyperparams import Resolved
from rlkit.loop import Loop, LoopConfig
from rlkit.optim import check_optimizer_states
from rlkit.runtime import PRECISIONS, pick_device, update_autocast

RUN_FLAGS = ("seed", "device", "precision", "allreduce", "distributed", "run_dir", "resume", "eval_interval",
             "checkpoint_interval", "no_progress", "print_config", "config_file")
"""Flags every job shares (parsed by :func:`add_run_flags`)."""


def add_run_flags(group: argparse._ArgumentGroup, unit: str, eval_default: str = "the job's") -> None:
    """The flags every kind of run has; ``unit`` names what the intervals count (env steps, updates)."""
    group.add_argument("--seed", type=whole_number, help="seeds initialization, data order, exploration and envs (default: 1)")
    group.add_argument("--device", help="auto, cpu or cuda (default: auto: a GPU if there is one)")
    group.add_argument("--threads", type=whole_number, help="torch threads (default: 0, auto: OMP_NUM_THREADS if set, else "
                                                   "one for agents and every core for supervised conv nets; runs side "
                                                   "by side want one each)")
    group.add_argument("--precision", choices=PRECISIONS,
                       help="what the updates compute in: fp32, bf16 (torch.autocast: matrix products and "
                            "convolutions in bfloat16, weights, losses and optimizer state fp32; acting and "
                            "evaluation stay fp32) or auto (bf16 on a GPU that supports it or a CPU with AMX or "
                            "AVX512-BF16, else fp32). --resume keeps the run's unless given (default: fp32, until "
                            "bf16 has shown equal learning on the benchmarks)")
    group.add_argument("--allreduce", choices=ALLREDUCES,
                       help="applies under torchrun only: how the processes of a data-parallel run sum their "
                            "gradients, metrics and statistics, builtin (torch.distributed.all_reduce) or ring "
                            "(rlkit.collectives.ring_all_reduce, written out on point-to-point messages for "
                            "teaching; slower). A single-process run has nothing to sum and ignores it. Saved "
                            "with the run; --resume keeps it unless given again (default: builtin)")
    group.add_argument("--distributed", choices=DISTRIBUTED,
                       help="applies under torchrun only, to classifiers: ddp (data-parallel, every process steps its "
                            "replica), ps-sync or ps-async (a parameter server: rank 0 holds the parameters and the "
                            "optimizer, the other ranks pull parameters and push gradients of their shard; the "
                            "server waits for every worker's gradient each step, or applies each as it arrives). "
                            "Saved with the run (default: ddp)")
    group.add_argument("--run-dir", type=Path, help="where the run is written (default: runs/NAME__SEED__TIME)")
    group.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue the run saved in RUN_DIR")
    group.add_argument("--eval-interval", type=whole_number, help=f"{unit} between evaluations (default: {eval_default})")
    group.add_argument("--checkpoint-interval", type=whole_number, help=f"{unit} between checkpoints (default: the job's)")
    group.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    group.add_argument("--print-config", action="store_true",
                       help="print the resolved settings and config as JSON, with where each value came from, and "
                            "exit without training")
    group.add_argument("--config", type=Path, action="append", dest="config_file", metavar="FILE",
                       help="a YAML or TOML file of config fields and run settings, flat or in sections keyed by env "
                            "id; it overrides the preset and the shipped per-env values, flags override it; repeat "
                            "it to layer files (the last wins)")


class Job(ABC):
    """One kind of run. Subclasses name their settings dataclass, the flags that select what is trained
    (``--agent``/``--env``, ``--task``/``--net``) and implement the abstract methods."""

    kind: ClassVar[str]
    """The key in :data:`rlkit.jobs.JOBS` and in checkpoints."""
    settings_class: ClassVar[type]
    """Run settings beyond the learner's config (names, budget, seed, device, intervals)."""
    resume_overrides: ClassVar[tuple[str, ...]] = ()
    """Settings a resumed run may change (``total_steps`` to extend a run); device and progress always may."""
    unit: ClassVar[str] = "steps"
    eval_interval_default: ClassVar[str] = "the job's"
    """What --help says of the default evaluation interval."""
    best_metric: ClassVar[str | None] = None
    """The evaluation metric (higher is better) whose best value is kept in ``best.pt``; None: no best.pt."""

    # ------------------------------------------------------------------ configuration
    @abstractmethod
    def add_flags(self, parser: argparse.ArgumentParser, run: argparse._ArgumentGroup) -> None:
        """The job's own run flags (into ``run``), all defaulting to None."""

    @abstractmethod
    def config_class(self, names: dict[str, Any]) -> type:
        """The learner's config dataclass for the selected names (``agent``, ``net``...)."""

    @abstractmethod
    def preset(self, names: dict[str, Any]) -> Any | None:
        """The config that runs when no config flag is given, or None when it depends on a name not given yet
        (``--help`` then shows the class defaults)."""

    def hyperparams(self, names: dict[str, Any]) -> Resolved:
        """The preset and where each of its values came from; ``names["config_files"]`` (``--config``) is for
        jobs with hyperparameter files (agents)."""
        if names.get("config_files"):
            raise UserError(f"--config is for agent runs (--agent NAME --env ENV); a {self.kind} run takes its "
                            "values from flags: drop --config")
        preset = self.preset(names)
        fields = [f.name for f in dataclasses.fields(preset)] if preset is not None else []
        return Resolved(preset, {}, {name: "preset" for name in fields}, ["preset"])

    def base_config(self, names: dict[str, Any]) -> Any:
        """What ``--help`` shows when :meth:`preset` cannot tell yet: the config class's defaults."""
        return self.config_class(names)()

    @abstractmethod
    def new_settings(self, args: argparse.Namespace) -> Any:
        """Settings of a new run from the parsed flags (defaults filled in)."""

    def resume(self, settings: Any, args: argparse.Namespace, steps_taken: int) -> None:
        """Check (and complete) the settings of a resumed run once the flags it may change are applied."""

    @abstractmethod
    def run_name(self, settings: Any) -> str:
        """The default run directory's name (``ENV__AGENT__SEED``)."""

    def describe(self, settings: Any, loop: Loop) -> str:
        return f"{self.run_name(settings)} for {loop.config.total_steps} {self.unit}"

    # ------------------------------------------------------------------ running
    @abstractmethod
    def build(self, settings: Any, config: Any, run_dir: Path, resume: dict[str, Any] | None = None) -> Loop:
        """Learner, source, evaluation and loop for a new run, or continuing ``resume``."""

    def header(self, settings: Any, config: Any, **extra: Any) -> dict[str, Any]:
        """What every checkpoint of the run starts with: enough to rebuild the job alone."""
        return {"job": self.kind, "settings": dataclasses.asdict(settings), "config": config_to_dict(config), **extra}

    def make_loop(self, learner: Any, source: Any, settings: Any, config: Any, run_dir: Path,
                  loop_config: LoopConfig, resume: dict[str, Any] | None,
                  evaluate: Callable[[], dict[str, float]] | None, save_extra: Callable[[Path], None] | None = None,
                  **header_extra: Any) -> Loop:
        """The shared loop around a built learner and source; writes ``config.json`` and restores ``resume``."""
        header = self.header(settings, config, **header_extra)
        loop_config.best_metric = loop_config.best_metric or self.best_metric
        loop_config.autocast = update_autocast(settings.precision, pick_device(settings.device))
        loop = Loop(learner, source, loop_config, run_dir, header, evaluate=evaluate, save_extra=save_extra)
        if resume is not None:
            restore(loop, resume)
        if is_main():
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "config.json").write_text(json.dumps(header, indent=2) + "\n")
        return loop

    # ------------------------------------------------------------------ saved runs
    def settings_from(self, checkpoint: dict[str, Any]) -> Any:
        """The run's settings, validated (a stranger's checkpoint gets a one-line error, not a traceback)."""
        return dataclass_from(self.settings_class, checkpoint.get("settings"), "settings")

    def config_from(self, checkpoint: dict[str, Any], settings: Any) -> Any:
        names = dataclasses.asdict(settings)
        return dataclass_from(self.config_class(names), checkpoint.get("config"), "config")

    @abstractmethod
    def rebuild(self, checkpoint: dict[str, Any], device: str = "auto", **overrides: Any) -> Any:
        """The trained learner (and what evaluating it needs) from a checkpoint dict."""

    @abstractmethod
    def add_report_flags(self, parser: argparse.ArgumentParser) -> None:
        """``evaluate.py``'s flags for this kind of run."""

    @abstractmethod
    def report(self, checkpoint: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
        """Evaluate the saved run, print a summary (or JSON with ``--json``) and return the result."""


def dataclass_from(cls: type, data: Any, what: str) -> Any:
    """``cls(**data)`` for data read from a checkpoint; anything malformed is a :class:`UserError`."""
    if not isinstance(data, dict):
        raise UserError(f"the checkpoint's {what} are missing or malformed: pass a checkpoint written by train.py")
    try:
        return config_from_dict(cls, data)
    except (TypeError, ValueError) as error:
        raise UserError(f"the checkpoint's {what} do not fit {cls.__name__} ({error}): pass a checkpoint written "
                        "by train.py") from None


STATE_ERRORS = (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError)
"""What ``load_state_dict`` raises on a state of another shape or layout."""


def does_not_fit(what: str, built: str, error: BaseException) -> UserError:
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return UserError(f"the checkpoint's {what} does not fit {built} rebuilt from its config "
                     f"({type(error).__name__}: {first[:200]}): pass a checkpoint written by train.py")


def restore(loop: Loop, checkpoint: dict[str, Any]) -> None:
    """Continue ``loop`` from ``checkpoint``; a state that does not fit the built job is a :class:`UserError`."""
    try:
        loop.restore(checkpoint)
    except STATE_ERRORS as error:
        raise does_not_fit("saved state", "the job", error) from None
    check_optimizer_states(loop.learner)  # before the first step (D4)


def load_learner(learner: Any, checkpoint: dict[str, Any]) -> None:
    """``learner.load_state_dict`` with a one-line error for a state that does not fit."""
    try:
        learner.load_state_dict(checkpoint["learner"])
    except STATE_ERRORS as error:
        raise does_not_fit("learner state", "the net", error) from None
    check_optimizer_states(learner)  # evaluate.py never steps, but a rebuilt learner may be trained on (D4)


def warn_non_finite_weights(checkpoint: dict[str, Any]) -> None:
    """One line on stderr when the checkpoint's weights hold NaN or inf: what is reported is then meaningless."""
    bad = [path for path, _ in non_finite_tensors(checkpoint.get("learner"), skip_optimizers=True)]
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        print(f"warning: the checkpoint's weights are non-finite (NaN or inf in {shown}): the run diverged, so "
              "these numbers mean nothing; evaluate an earlier checkpoint or retrain with a smaller learning rate",
              file=sys.stderr)


def new_run_dir(chosen: Path | None, name: str) -> Path:
    """``chosen``, or ``runs/NAME__TIME``; refuses a folder that already holds a run."""
    run_dir = chosen or Path("runs") / f"{name.replace('/', '-')}__{int(time.time())}"
    if (run_dir / CHECKPOINT_NAME).exists():
        raise UserError(f"{run_dir} already holds a run: continue it with --resume {run_dir} or pick another --run-dir")
    return run_dir
