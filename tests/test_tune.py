"""``rlkit tune``: Optuna trials as ordinary runs, pruned on their evaluations, the best values as a --config file."""

from __future__ import annotations

import importlib.util
import json

import pytest
import yaml

import train
from rlkit.checkpoint import load_checkpoint
from rlkit.cli import tune as tune_cli
from rlkit.errors import UserError, run_command

TINY = ["--agent", "dqn", "--env", "CartPole", "--total-steps", "600", "--learning-starts", "100", "--hidden", "16",
        "--buffer-size", "1000", "--eval-episodes", "2", "--eval-interval", "200"]
"""A DQN run of a second or so with evaluations at steps 200, 400 and 600."""


def needs_optuna():
    return pytest.importorskip("optuna", reason="rlkit tune needs optuna (pip install -e '.[tune]')")


def test_rlkit_tune_runs_three_trials_and_writes_a_best_file_that_config_accepts(tmp_path, capsys):
    needs_optuna()
    study = tmp_path / "study"
    tune_cli.main([*TINY, "--param", "learning_rate=loguniform:1e-4:1e-2", "--param", "batch_size=choice:16,32",
                   "--trials", "3", "--study-dir", str(study), "--seed", "3"])
    out = capsys.readouterr().out
    rows = json.loads((study / "trials.json").read_text())
    assert [row["number"] for row in rows] == [0, 1, 2]
    assert all(row["evaluations"] for row in rows)  # every trial reported its evaluations to the pruner
    for row in rows:
        run = study / f"trial_{row['number']}" / "run"
        header = json.loads((run / "config.json").read_text())
        assert header["config"]["learning_rate"] == row["params"]["learning_rate"]  # an ordinary run of its values
        assert header["config"]["batch_size"] == row["params"]["batch_size"] and header["config"]["hidden"] == [16]
        assert [json.loads(line)["step"] for line in (run / "eval.jsonl").read_text().splitlines()][0] == 200
    complete = [row for row in rows if row["state"] == "COMPLETE"]
    best = max(complete, key=lambda row: row["value"])
    assert best["value"] == best["evaluations"]["600"]  # scored by the last evaluation
    assert f"best: trial {best['number']}" in out

    best_file = study / "best.yml"
    assert yaml.safe_load(best_file.read_text())["CartPole-v1"]["learning_rate"] == best["params"]["learning_rate"]
    train.main(["--agent", "dqn", "--env", "CartPole", "--config", str(best_file), "--print-config"])
    printed = json.loads(capsys.readouterr().out)
    assert printed["config"]["learning_rate"] == best["params"]["learning_rate"]
    assert printed["config"]["batch_size"] == best["params"]["batch_size"]
    assert printed["sources"][f"--config {best_file}:CartPole-v1"] == ["batch_size", "learning_rate"]


def test_a_trial_whose_evaluations_fall_below_the_median_is_pruned(tmp_path, monkeypatch):
    """Evaluation returns are faked from the learning rate: the second trial (1e-4) scores below the first (1e-2)
    at its first evaluation and is stopped there, before the end of its run."""
    optuna = needs_optuna()
    import rlkit.jobs.agent
    from rlkit import tune

    monkeypatch.setattr(rlkit.jobs.agent, "evaluate_agent",
                        lambda agent, *args, **kwargs: [agent.config.learning_rate * 1e4] * 2)
    result = tune.tune(TINY, [tune.parse_param("learning_rate=loguniform:1e-5:1e-1")], tmp_path / "study", trials=2,
                       pruner=optuna.pruners.MedianPruner(n_startup_trials=1),
                       enqueue=[{"learning_rate": 1e-2}, {"learning_rate": 1e-4}])
    first, second = result.study.trials
    assert first.state == optuna.trial.TrialState.COMPLETE and first.value == pytest.approx(100.0)
    assert first.intermediate_values == pytest.approx({200: 100.0, 400: 100.0, 600: 100.0})
    assert second.state == optuna.trial.TrialState.PRUNED
    assert second.intermediate_values == pytest.approx({200: 1.0})
    pruned_run = tmp_path / "study" / f"trial_{second.number}" / "run"  # stopped like any run: saved, resumable
    assert [json.loads(line)["step"] for line in (pruned_run / "eval.jsonl").read_text().splitlines()] == [200]
    assert load_checkpoint(pruned_run)["loop"]["steps"] == 200
    assert yaml.safe_load(result.best_file.read_text())["CartPole-v1"]["learning_rate"] == pytest.approx(1e-2)


@pytest.mark.parametrize("argv, match", [
    (["--param", "learnin_rate=loguniform:1e-5:1e-2"], "unknown key 'learnin_rate': did you mean learning_rate"),
    (["--param", "learning_rate=log:1e-5:1e-2"], "write NAME=loguniform:LOW:HIGH"),
    (["--param", "learning_rate=loguniform:0:1"], "a log range needs low > 0"),
    (["--param", "gamma=uniform:0.99:0.9"], "the range needs low < high"),
    (["--param", "double=uniform:0:1"], "double is not a number: search it with choice:A,B"),
    ([], "rlkit tune needs a search space"),
    (["--param", "gamma=uniform:0.9:0.99", "--eval-episodes", "0"], "nothing to score trials by"),
    (["--param", "gamma=uniform:0.9:0.99", "--seed", "-1"], "--seed must be at least 0, got -1"),  # was a traceback
])
def test_a_bad_search_is_a_one_line_error(tmp_path, argv, match):
    needs_optuna()
    base = [a for a in TINY if a not in ("--eval-episodes", "2")] if "--eval-episodes" in argv else TINY
    with pytest.raises(UserError, match=match):
        tune_cli.main([*base, *argv, "--trials", "1", "--study-dir", str(tmp_path / "study")])
    assert not (tmp_path / "study" / "trial_0").exists()


def test_search_spaces_from_a_file(tmp_path):
    needs_optuna()
    from rlkit import tune

    spaces = tmp_path / "spaces.yml"
    spaces.write_text("learning_rate: {low: 1.0e-5, high: 1e-2, log: true}\nbatch_size: [32, 64]\n"
                      "hidden: [[64, 64], [256, 256]]\n")
    assert tune.params_from_file(spaces) == [
        tune.Param("learning_rate", 1e-5, 1e-2, log=True), tune.Param("batch_size", choices=(32, 64)),
        tune.Param("hidden", choices=([64, 64], [256, 256]))]
    spaces.write_text("learning_rate: {low: 1.0e-5}\n")
    with pytest.raises(UserError, match=r"spaces\.yml: learning_rate must be \{low: L, high: H"):
        tune.params_from_file(spaces)


def test_without_optuna_the_command_says_how_to_install_it(monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "optuna" else real(name, *a))
    with pytest.raises(SystemExit) as exit_:
        run_command(lambda: tune_cli.main([*TINY, "--param", "gamma=uniform:0.9:0.99"]))
    assert exit_.value.code == 2
    assert capsys.readouterr().err == 'error: rlkit tune needs optuna: pip install -e ".[tune]"\n'


def test_a_diverged_trial_fails_and_the_study_goes_on(tmp_path, monkeypatch):
    optuna = needs_optuna()
    import rlkit.jobs.agent
    from rlkit import tune
    from rlkit.loop import Diverged

    def evaluate(agent, *args, **kwargs):
        if agent.config.learning_rate < 1e-3:
            raise Diverged("training diverged (faked)")
        return [1.0, 1.0]

    monkeypatch.setattr(rlkit.jobs.agent, "evaluate_agent", evaluate)
    result = tune.tune(TINY, [tune.parse_param("learning_rate=loguniform:1e-5:1e-1")], tmp_path / "study", trials=2,
                       enqueue=[{"learning_rate": 1e-4}, {"learning_rate": 1e-2}])
    assert [t.state for t in result.study.trials] == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE]
    assert yaml.safe_load(result.best_file.read_text())["CartPole-v1"]["learning_rate"] == pytest.approx(1e-2)
    assert [row["state"] for row in json.loads((tmp_path / "study" / "trials.json").read_text())] == ["FAIL", "COMPLETE"]
