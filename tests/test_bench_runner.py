"""benchmarks/runner.py, the one way the learning benchmarks run train.py: a kept run directory stays with its
evaluations, a scratch one goes, and a failed run raises with its label and the reason train.py printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def runner(load_benchmark):
    return load_benchmark("runner")


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


def test_learning_curve_reports_each_seed_from_its_evaluations(load_benchmark, tmp_path):
    rows = load_benchmark("learning_curve").main(["--agent", "ppo", "--env", "CartPole-v1", "--steps", "512", "--seeds", "1",
                        "--eval-interval", "256", "--eval-episodes", "2", "--threshold", "0",
                        "--runs-dir", str(tmp_path), "--", "--num-envs", "1", "--num-steps", "256"])
    lines = (tmp_path / "ppo_CartPole-v1_s1" / "eval.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    (row,) = rows
    assert [step for step, _, _ in row["curve"]] == [record["step"] for record in records] == [256, 512]
    assert row["final"] == round(records[-1]["eval/mean_return"], 1)
    # threshold 0: the first evaluation reaches it, at its step and training time
    assert (row["first_step_at_threshold"], row["first_trained_s_at_threshold"]) == (256, row["curve"][0][1])
