"""benchmarks/runner.py, the one way the learning benchmarks run train.py: a kept run directory stays with its
evaluations, a scratch one goes, and a failed run raises with its label and the reason train.py printed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def runner():
    spec = importlib.util.spec_from_file_location("runner", ROOT / "benchmarks" / "runner.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["runner"] = module
    spec.loader.exec_module(module)
    return module


def test_a_kept_run_directory_holds_the_evaluations_returned(runner, tmp_path):
    run_dir = tmp_path / "run"
    records = runner.train(["--agent", "ppo", "--env", "CartPole-v1", "--total-steps", "256", "--seed", "1",
                            "--eval-episodes", "2", "--threads", "1"], run_dir)
    assert records == runner.evaluations(run_dir)
    assert records[-1]["step"] == 256 and records[-1]["eval/mean_return"] >= 8  # a CartPole game lasts 8+ steps
    assert (run_dir / "checkpoint.pt").exists()


def test_a_failed_run_raises_with_its_label_and_reason(runner):
    with pytest.raises(RuntimeError, match=r"cell 7: exit 2: .*nope"):
        runner.train(["--agent", "nope", "--env", "CartPole-v1"], label="cell 7")


def test_the_child_runs_on_one_thread_with_this_checkout_importable(runner, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    env = runner.single_thread_env()
    assert env["OMP_NUM_THREADS"] == "1" and env["MKL_NUM_THREADS"] == "1" and env["PYTHONPATH"] == str(ROOT)


def test_a_scratch_run_directory_is_removed_afterwards(runner, tmp_path, monkeypatch):
    monkeypatch.setattr(runner.tempfile, "tempdir", str(tmp_path))
    records = runner.train(["--agent", "ppo", "--env", "CartPole-v1", "--total-steps", "256", "--seed", "1",
                            "--eval-episodes", "1", "--threads", "1"])
    assert records[-1]["step"] == 256 and list(tmp_path.iterdir()) == []
