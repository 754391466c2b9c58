"""benchmarks/vs_sb3.py without SB3: the plan builds and installs nothing, and the rlkit worker measures. No
timings are checked (only that a rate comes out)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "vs_sb3.py"
WORKLOADS = ("dqn-breakout", "ppo-breakout", "sac-halfcheetah", "ppo-halfcheetah", "sac-pendulum-x2",
             "ppo-cartpole-x2")


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT, env=env,
                          check=False, timeout=120)


def test_dry_run_prints_the_plan_and_installs_nothing(tmp_path):
    venv = tmp_path / "sb3-venv"
    done = run("--dry-run", "--venv", str(venv), "--repeats", "2")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for name in WORKLOADS:
        assert f"\n{name}:" in out
        assert f"--worker rlkit --workload {name}" in out and f"--worker sb3 --workload {name}" in out
    assert "stable-baselines3==2.9.2" in out and "torch==" in out
    assert f"{venv}/bin/python" in out  # the SB3 side runs the venv's python
    assert out.count("--worker sb3 --workload sac-pendulum-x2") == 2  # two seeds side by side
    assert not venv.exists()


def test_unknown_workload_is_refused():
    done = run("--dry-run", "--workloads", "dqn-pong")
    assert done.returncode == 2 and "unknown workload" in done.stderr


def test_rlkit_worker_prints_a_positive_rate():
    done = run("--worker", "rlkit", "--workload", "ppo-cartpole-x2", "--seconds", "0.5", "--seed", "3",
               "--threads", "1", "--warmup-steps", "256")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["side"] == "rlkit" and result["workload"] == "ppo-cartpole-x2" and result["seed"] == 3
    assert result["steps_per_s"] > 0 and result["updates_per_s"] > 0 and result["window_steps"] > 0
    assert result["threads"] == 1


def test_no_workload_takes_a_value_from_a_shipped_per_env_file(load_benchmark):
    """Both sides must run the workload's hyperparameters: a value the rlkit side took from rlkit/hyperparams (rl-zoo's
    HalfCheetah entry: 256x256 ReLU nets against SB3's 64x64 tanh) made the PPO HalfCheetah ratio meaningless."""
    import dataclasses

    vs_sb3 = load_benchmark("vs_sb3")
    for workload in vs_sb3.WORKLOADS.values():
        vs_sb3.check_same_config(workload)
    cheetah = vs_sb3.WORKLOADS["ppo-halfcheetah"]
    without = {k: v for k, v in cheetah.rlkit.items() if k not in ("hidden", "activation")}
    with pytest.raises(SystemExit, match="would take activation, hidden from a shipped per-env file"):
        vs_sb3.check_same_config(dataclasses.replace(cheetah, rlkit=without))
