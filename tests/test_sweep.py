"""benchmarks/sweep.py without SB3: the plan builds and installs nothing, verdicts and the "learns" check follow
their stated rules on hand-made numbers, stale rlkit runs (other defaults) stop counting, and the rlkit side's run
and fingerprint work on a tiny budget."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "sweep.py"


@pytest.fixture(scope="module")
def sweep(load_benchmark):
    return load_benchmark("sweep")


def test_dry_run_prints_the_plan_and_installs_nothing(tmp_path):
    venv = tmp_path / "sb3-venv"
    done = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--venv", str(venv), "--families", "classic",
                           "--budgets", "short", "--seeds", "2", "--results", str(tmp_path / "r.jsonl")],
                          capture_output=True, text=True, cwd=ROOT, check=False, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert not venv.exists() and not (tmp_path / "r.jsonl").exists()
    lines = done.stdout.splitlines()
    assert "would be created" in lines[0]
    # classic: 3 discrete envs x (dqn, ppo, a2c, trpo) + 2 box envs x (ppo, a2c, trpo, sac, td3, ddpg) = 24 cells
    assert lines[1].startswith("24 cells, 96 runs, 2 at a time")
    assert "rlkit dqn CartPole-v1 short=20480 seed 1" in lines and "sb3 dqn CartPole-v1 short=20480 seed 2" in lines
    assert not any(" dqn Pendulum" in line or " sac CartPole" in line for line in lines)  # spaces respected


def test_unknown_names_are_one_line_errors(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--agents", "dqnn"], capture_output=True,
                          text=True, cwd=ROOT, check=False, timeout=60)
    assert done.returncode == 2 and "unknown agent(s) dqnn" in done.stderr


def test_verdict_is_a_tie_within_the_larger_spread(sweep):
    assert sweep.verdict([100, 110, 120], [100, 100, 100]) == "tie"  # gap 10, sd 10
    assert sweep.verdict([100, 110, 121], [100, 100, 100]) == "tie"  # gap 10.33, sd 10.50
    assert sweep.verdict([120, 121, 122], [100, 100, 100]) == "win"  # gap 21, sd 1
    assert sweep.verdict([10, 10, 10], [20, 21, 19]) == "loss"  # gap -10, sd 1
    assert sweep.verdict([5.0], [5.0]) == "tie"
    assert sweep.verdict([], [1.0]) == "-"


def test_learns_needs_the_random_mean_plus_its_spread(sweep):
    random = {"mean": 20.0, "std": 10.0}
    assert sweep.learns([31.0, 29.5], random) == "yes"  # mean 30.25 > 30
    assert sweep.learns([30.0, 30.0], random) == "NO"
    assert sweep.learns([], random) == "-"


def entry(side, seed, mean, fingerprint="f1", agent="ppo", env="CartPole-v1", budget=20480):
    return {"side": side, "agent": agent, "env": env, "budget": budget, "seed": seed, "mean": mean, "wall_s": 10.0,
            "fingerprint": fingerprint, "sb3": "2.9.2"}


def test_stale_rlkit_runs_do_not_count_and_are_run_again(sweep):
    plan = sweep.build_plan(["ppo"], ["classic"], ["short"], [1, 2], ["CartPole-v1"])
    results = [entry("rlkit", 1, 50.0, "old"), entry("rlkit", 2, 60.0, "old"), entry("sb3", 1, 100.0),
               entry("sb3", 2, 102.0), {"side": "random", "env": "CartPole-v1", "mean": 20.0, "std": 10.0}]
    fingerprints = {("ppo", "CartPole-v1", 20480): ("new", "new-legacy")}
    assert [run.side for run in plan if not sweep.is_done(run, results, fingerprints, "2.9.2")] == ["rlkit", "rlkit"]
    row, = sweep.summarize(results, plan, fingerprints)
    assert row["rlkit"] == [] and row["sb3"] == [100.0, 102.0]
    results += [entry("rlkit", 1, 500.0, "new"), entry("rlkit", 2, 480.0, "new-legacy")]  # either digest stands
    row, = sweep.summarize(results, plan, fingerprints)
    assert row["rlkit"] == [500.0, 480.0] and row["verdict"] == "win" and row["learns"] == "yes"
    assert not [run for run in plan if not sweep.is_done(run, results, fingerprints, "2.9.2")]
    assert [run for run in plan if not sweep.is_done(run, results, fingerprints, "2.10.0")]  # another SB3 reruns


def test_report_counts_verdicts_and_names_the_cells_not_run(sweep, capsys):
    plan = sweep.build_plan(["ppo", "a2c"], ["classic"], ["short"], [1, 2], ["CartPole-v1"])
    results = [entry("rlkit", 1, 500.0), entry("rlkit", 2, 490.0), entry("sb3", 1, 200.0), entry("sb3", 2, 210.0),
               entry("rlkit", 1, 100.0, agent="a2c")]
    sweep.print_report(sweep.summarize(results, plan), markdown=True)
    out = capsys.readouterr().out
    assert "| ppo | CartPole-v1 | 20,480 | 495.0 ± 7.1 (2) | 205.0 ± 7.1 (2) | - | win |" in out
    assert "wins 1, ties 0, losses 0" in out and "1 of 2 cells not run, 0 run with fewer seeds than planned" in out
    assert "not run: a2c/CartPole-v1/20480" in out
    # A cell stopped after one of its two seeds on one side was counted as run in full.
    sweep.print_report(sweep.summarize(results[:3], plan), markdown=True)
    out = capsys.readouterr().out
    assert "1 run with fewer seeds than planned" in out and "fewer seeds: ppo/CartPole-v1/20480 (2 rlkit, 1 SB3 of 2)" in out


def test_fields_added_at_their_inert_values_keep_the_fingerprint(sweep):
    """A run stored before a field existed (recurrent, distributional, allreduce...) stays current while the field
    holds the value that means "as before"; any other value, or any other change, is a new digest. The legacy
    digest (only overlap and precision left out) is the one runs stored since those fields existed carry."""
    before = {"settings": {"agent": "dqn", "env": "CartPole-v1", "total_steps": 20480, "seed": 0, "threads": 1},
              "config": {"learning_rate": 0.0023, "double": False}}
    after = {"settings": {**before["settings"], "allreduce": "builtin", "partially_observed": False, "preset": "",
                          "overlap": "off", "precision": "fp32", "actor_chunk_steps": 50},
             "config": {**before["config"], "distributional": False, "num_atoms": 51, "noisy": False,
                        "adam_eps": 1e-8, "recurrent": "none"}}
    new, legacy = sweep.fingerprints(after)
    assert new == sweep.fingerprints(before)[0] and legacy != new
    legacy_settings = {k: v for k, v in after["settings"].items() if k not in ("overlap", "precision", *sweep.SCHEDULING)}
    text = json.dumps({"settings": legacy_settings, "config": after["config"]}, sort_keys=True)
    assert legacy == hashlib.sha256(text.encode()).hexdigest()[:16]
    for part, key, value in [("config", "distributional", True), ("config", "num_atoms", 101),
                             ("settings", "precision", "bf16"), ("config", "learning_rate", 1e-3)]:
        changed = {**after, part: {**after[part], key: value}}
        assert sweep.fingerprints(changed)[0] != new, key
    assert sweep.fingerprints({**after, "settings": {**after["settings"], "seed": 5, "threads": 2}})[0] == new


def test_the_rlkit_side_runs_and_fingerprints_its_config(sweep):
    env = sweep.Env("CartPole-v1", "classic", "discrete")
    run = sweep.Run("ppo", env, "short", 512, 3, "rlkit")
    result = sweep.run_rlkit(run, timeout=300)
    assert result["steps"] == 512 and result["mean"] >= 8  # a CartPole game lasts at least 8 steps
    assert sweep.rlkit_fingerprint("ppo", "CartPole-v1", 512) == sweep.rlkit_fingerprint("ppo", "CartPole-v1", 512)
    assert sweep.rlkit_fingerprint("ppo", "CartPole-v1", 512) != sweep.rlkit_fingerprint("ppo", "CartPole-v1", 1024)


def test_the_random_baseline_plays_whole_games(sweep):
    returns = sweep.play(lambda obs, env: env.action_space.sample(), "CartPole-v1", 3, 0)
    assert len(returns) == 3 and all(r >= 8 and r == int(r) for r in returns)
    assert returns == sweep.play(lambda obs, env: env.action_space.sample(), "CartPole-v1", 3, 0)  # seeded
    assert json.dumps(returns)
