"""Hyperparameter search with Optuna (``rlkit tune``): each trial is an ordinary training run in its own folder under
the study directory, scored by its last evaluation's mean return and stopped early (pruned) when its evaluations
fall below the median of earlier trials at the same step. The best trial's values are written as a hyperparameter
file that ``train.py --config`` reads.

Search spaces name config fields. In a YAML file::

    learning_rate: {low: 1.0e-5, high: 1.0e-2, log: true}   # a range (whole numbers for an int field)
    batch_size: [32, 64, 128]                                # a choice
    hidden: [[64, 64], [256, 256]]

or as flags: ``--param learning_rate=loguniform:1e-5:1e-2``, ``--param gamma=uniform:0.9:0.999``,
``--param batch_size=choice:32,64,128``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml

from rlkit.cli.train import prepare
from rlkit.config import coerce, read_config_file, unknown_key
from rlkit.envs import resolve_env
from rlkit.errors import UserError
from rlkit.loop import Callback, Diverged
from rlkit.runlock import RunLock

OBJECTIVE = "eval/mean_return"
"""The metric a trial is scored (and pruned) by."""


@dataclass(frozen=True)
class Param:
    """One config field's search space: a range ``low``..``high`` (log-scaled with ``log``) or ``choices``."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def sample(self, trial: optuna.Trial, hint: Any) -> Any:
        """A value for ``trial``, of the field's type ``hint``."""
        if self.choices:
            # Optuna's choices are scalars: a list (hidden widths) is offered as its YAML text
            labels = [yaml.safe_dump(c, default_flow_style=True).strip() if isinstance(c, list) else c
                      for c in self.choices]
            picked = trial.suggest_categorical(self.name, labels)
            return self.choices[labels.index(picked)]
        if hint is int:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log)


def parse_param(text: str) -> Param:
    """``NAME=uniform:LOW:HIGH``, ``NAME=loguniform:LOW:HIGH`` or ``NAME=choice:A,B,C`` (values read as YAML)."""
    name, _, spec = text.partition("=")
    kind, _, rest = spec.partition(":")
    usage = (f"--param {text}: write NAME=loguniform:LOW:HIGH, NAME=uniform:LOW:HIGH or NAME=choice:A,B,C "
             "(e.g. learning_rate=loguniform:1e-5:1e-2)")
    if not name or kind not in ("uniform", "loguniform", "choice") or not rest:
        raise UserError(usage)
    if kind == "choice":
        return Param(name, choices=tuple(yaml.safe_load(item) for item in rest.split(",")))
    low, _, high = rest.partition(":")
    try:
        return checked_range(Param(name, float(low), float(high), log=kind == "loguniform"), f"--param {text}")
    except ValueError:
        raise UserError(usage) from None


def params_from_file(path: str | Path) -> list[Param]:
    """The search spaces of a YAML or TOML file: ``field: {low, high, log}`` or ``field: [choice, ...]``."""
    params = []
    for name, spec in read_config_file(path).items():
        where = f"{path}: {name}"
        if isinstance(spec, list) and spec:
            params.append(Param(name, choices=tuple(spec)))
        elif isinstance(spec, dict) and {"low", "high"} <= set(spec) and set(spec) <= {"low", "high", "log"}:
            low, high = (coerce(float, spec[k], k, where) for k in ("low", "high"))
            params.append(checked_range(Param(name, low, high, log=bool(spec.get("log", False))), where))
        else:
            raise UserError(f"{where} must be {{low: L, high: H, log: true|false}} or a list of choices, got {spec!r}")
    return params


def checked_range(param: Param, where: str) -> Param:
    if not (math.isfinite(param.low) and math.isfinite(param.high) and param.low < param.high):
        raise UserError(f"{where}: the range needs low < high, got {param.low:g}..{param.high:g}")
    if param.log and param.low <= 0:
        raise UserError(f"{where}: a log range needs low > 0, got {param.low:g}")
    return param


def check_params(params: list[Param], config_class: type, where: str = "rlkit tune") -> dict[str, Any]:
    """Field -> type hint of each searched field; a name that is no field of the config is a one-line error."""
    if not params:
        raise UserError("rlkit tune needs a search space: --param NAME=loguniform:LOW:HIGH ... or --params FILE")
    hints = typing.get_type_hints(config_class)
    known = [f.name for f in dataclasses.fields(config_class) if f.init]
    for param in params:
        if param.name not in known:
            raise unknown_key(param.name, known, where)
        if not param.choices and hints[param.name] not in (int, float):
            raise UserError(f"{where}: {param.name} is not a number: search it with choice:A,B")
    return {param.name: hints[param.name] for param in params}


@dataclass
class Study:
    """What :func:`tune` leaves: the Optuna study and the hyperparameter file of its best trial."""

    study: optuna.Study
    best_file: Path | None


def tune(train_argv: list[str], params: list[Param], study_dir: Path, trials: int, timeout: float | None = None,
         seed: int = 1, pruner: optuna.pruners.BasePruner | None = None,
         enqueue: list[dict[str, Any]] = ()) -> Study:
    """Run up to ``trials`` training runs of ``train_argv`` (``--agent A --env E`` and any train flags), each with
    values drawn for ``params``, in ``study_dir/trial_N``. The study is kept in ``study_dir/study.db``: running
    again with the same folder continues it. ``enqueue`` fixes the values of the first trials."""
    base = prepare([*train_argv, "--print-config"])  # refuses a bad command line before any trial
    if base.checkpoint is not None or base.job.kind != "agent":
        raise UserError("rlkit tune searches agent runs: pass --agent NAME --env ENV (not --resume or --task)")
    if base.settings.eval_episodes < 1:
        raise UserError("--eval-episodes 0 leaves rlkit tune nothing to score trials by: keep evaluations on")
    hints = check_params(params, type(base.config))
    study_dir.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        study_name="rlkit", storage=f"sqlite:///{study_dir / 'study.db'}", load_if_exists=True, direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed), pruner=pruner or optuna.pruners.MedianPruner())
    for values in enqueue:
        study.enqueue_trial(values)

    def objective(trial: optuna.Trial) -> float:
        values = {param.name: param.sample(trial, hints[param.name]) for param in params}
        return run_trial(trial, train_argv, values, study_dir / f"trial_{trial.number}", seed)

    try:
        # A trial that diverges failed (its values are bad), the study goes on; a stop signal ends the study.
        study.optimize(objective, n_trials=trials, timeout=timeout, catch=(Diverged,))
    finally:
        best_file = write_best(study, study_dir / "best.yml", base.settings.agent, base.settings.env, train_argv)
        write_summary(study, study_dir / "trials.json")
    return Study(study, best_file)


def run_trial(trial: optuna.Trial, train_argv: list[str], values: dict[str, Any], trial_dir: Path, seed: int) -> float:
    """One ordinary run with ``values`` as its last ``--config`` layer; each evaluation is reported to Optuna, and a
    trial the pruner stops ends early, saved like any stopped run, then raises :class:`optuna.TrialPruned`."""
    trial_dir.mkdir(parents=True, exist_ok=True)
    values_file = trial_dir / "params.yml"
    values_file.write_text(yaml.safe_dump({k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}))
    run = prepare([*train_argv, "--config", str(values_file), "--run-dir", str(trial_dir / "run"), "--seed", str(seed),
                   "--no-progress"])
    print(f"trial {trial.number}: {json.dumps(values)} -> {run.run_dir}", flush=True)
    report = ReportToOptuna(trial, run.settings.total_steps)
    lock = RunLock(run.run_dir)
    try:
        loop = run.job.build(run.settings, run.config, run.run_dir)
        loop.callbacks.append(report)
        loop.run()
    finally:
        lock.release()
    if report.pruned is not None:
        raise optuna.TrialPruned(report.pruned)
    return report.scores[-1]


class ReportToOptuna(Callback):
    """Reports each evaluation's score to the trial and stops the run when the pruner says so."""

    def __init__(self, trial: optuna.Trial, total_steps: int):
        self.trial, self.total_steps = trial, total_steps
        self.scores: list[float] = []
        self.pruned: str | None = None

    def on_evaluation(self, loop: Any, step: int, metrics: dict[str, float]) -> bool:
        score = metrics[OBJECTIVE]
        self.scores.append(score)
        self.trial.report(score, step)
        if step < self.total_steps and self.trial.should_prune():
            self.pruned = f"{OBJECTIVE} {score:.2f} at step {step}"
            return False
        return True


def write_best(study: optuna.Study, path: Path, agent: str, env: str, train_argv: list[str]) -> Path | None:
    """The best trial's values as a hyperparameter file keyed by the env's id (None when no trial completed)."""
    try:
        best = study.best_trial
    except ValueError:  # no completed trial
        return None
    values = yaml.safe_load((path.parent / f"trial_{best.number}" / "params.yml").read_text())
    env_id = resolve_env(env).env_id
    source = (f"rlkit tune {' '.join(train_argv)}: trial {best.number} of {len(study.trials)}, {OBJECTIVE} "
              f"{best.value:.2f}")
    header = (f"# {agent} on {env_id}: the best values rlkit tune found; use them with\n"
              f"#   train.py {' '.join(train_argv)} --config {path}\n")
    path.write_text(header + yaml.safe_dump({env_id: {"source": source, **values}}, sort_keys=False, width=1_000))
    return path


def write_summary(study: optuna.Study, path: Path) -> None:
    rows = [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
             "evaluations": {str(step): value for step, value in sorted(t.intermediate_values.items())}}
            for t in study.trials]
    path.write_text(json.dumps(rows, indent=1) + "\n")
