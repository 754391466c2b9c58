"""The ``rlkit`` command and its subcommands through subprocesses (train, eval, plot, runs, the built wheel), and
the curve arithmetic behind ``rlkit plot`` against hand-computed numbers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rlkit.analysis.curves import (Curve, aggregate, eval_curve, find_runs, group_runs, read_evaluations, read_scalars,
                                   smooth, summarize)
from rlkit.analysis.plots import collect_lines
from rlkit.checkpoint import save_checkpoint
from rlkit.cli import runs as runs_cli
from rlkit.runlock import RunLock, is_locked

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
TINY_DQN = ["--agent", "dqn", "--env", "CartPole", "--total-steps", "600", "--learning-starts", "100",
            "--eval-episodes", "2", "--eval-interval", "200", "--no-progress"]


def rlkit(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """``python -m rlkit ARGS`` with this checkout's rlkit."""
    return subprocess.run([sys.executable, "-m", "rlkit", *args], capture_output=True, text=True, cwd=cwd, env=ENV,
                          timeout=300)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A folder with two finished tiny DQN CartPole runs (seeds 1 and 2), trained through ``rlkit train``."""
    root = tmp_path_factory.mktemp("runs")
    for seed in (1, 2):
        done = rlkit("train", *TINY_DQN, "--seed", str(seed), "--run-dir", str(root / f"dqn_{seed}"))
        assert done.returncode == 0, done.stderr
    return root


# ---------------------------------------------------------------------------------------------------- rlkit itself
def test_help_lists_every_command():
    done = rlkit("--help")
    assert done.returncode == 0
    for name in ("train", "eval", "plot", "runs", "tune", "visualize"):
        assert f"\n  {name} " in done.stdout
    train_help = rlkit("train", "--help")
    assert train_help.returncode == 0 and train_help.stdout.startswith("usage: rlkit train")
    assert "--agent" in train_help.stdout and "--resume" in train_help.stdout


def test_bad_input_is_one_line_and_exit_status_2(tmp_path):
    unknown = rlkit("fly")
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1 and "rlkit --help" in unknown.stderr
    bad_agent = rlkit("train", "--agent", "nosuch", "--env", "CartPole", "--print-config")
    assert bad_agent.returncode == 2 and bad_agent.stderr.startswith("error: ") and "Traceback" not in bad_agent.stderr
    assert bad_agent.stderr.count("\n") == 1
    no_run = rlkit("eval", str(tmp_path / "missing"))
    assert no_run.returncode == 2 and no_run.stderr.count("\n") == 1 and "Traceback" not in no_run.stderr


def test_train_then_eval(trained):
    run = trained / "dqn_1"
    assert [row["step"] for row in read_evaluations(run)] == [200, 400, 600]
    done = rlkit("eval", str(run), "--episodes", "2", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["episodes"] == 2 and len(result["returns"]) == 2


# ---------------------------------------------------------------------------------------------------- plot
def test_plot_writes_a_png_of_both_seeds(trained, tmp_path):
    from PIL import Image

    out = tmp_path / "curves.png"
    done = rlkit("plot", str(trained), "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "dqn on CartPole, eval/mean_return: 2 run(s), at steps 600" in done.stdout
    assert "charts/episodic_return: 2 run(s)" in done.stdout
    image = np.asarray(Image.open(out).convert("RGB"))
    assert image.shape == (418, 1210, 3)  # two panels of 5.5 x 3.8 inches at 110 dpi
    drawn = (image < 250).any(-1)
    assert 0.03 < drawn.mean() < 0.5  # axes, text and curves, on a white page
    assert drawn[:, :605].mean() > 0.01 and drawn[:, 605:].mean() > 0.01  # both panels hold something

    by_time = rlkit("plot", str(trained / "dqn_1"), str(trained / "dqn_2"), "--x", "time", "--band", "minmax",
                    "--metric", "eval/mean_return", "--out", str(tmp_path / "time.png"), cwd=tmp_path)
    assert by_time.returncode == 0, by_time.stderr
    assert Image.open(tmp_path / "time.png").size == (605, 418)  # one panel


def test_plot_of_a_folder_without_runs_is_one_line(tmp_path):
    done = rlkit("plot", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.startswith("error: no runs in") and done.stderr.count("\n") == 1


# ---------------------------------------------------------------------------------------------------- runs
def test_runs_lists_finished_running_and_stopped(trained, tmp_path):
    """A finished run; a copy resumed with a bigger budget is running while it trains, and stopped (at a step short
    of its new total) after Ctrl-C, which ends it with exit status 130 through ``rlkit train``."""
    shutil.copytree(trained / "dqn_1", tmp_path / "extended")
    shutil.copytree(trained / "dqn_2", tmp_path / "finished")
    process = subprocess.Popen([sys.executable, "-m", "rlkit", "train", "--resume", str(tmp_path / "extended"),
                                "--total-steps", "10000000", "--no-progress"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=ENV)
    try:
        while not process.stdout.readline().startswith("training"):
            assert process.poll() is None, process.stderr.read()
        while_running = {row["name"]: row for row in json.loads(rlkit("runs", str(tmp_path), "--json").stdout)}
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 130
    finally:
        process.kill()
    assert while_running["extended"]["status"] == "running"
    assert while_running["finished"]["status"] == "finished"

    done = rlkit("runs", str(tmp_path), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert rows["finished"]["status"] == "finished" and rows["finished"]["steps"] == 600
    assert rows["finished"]["total_steps"] == 600 and rows["finished"]["agent"] == "dqn"
    stopped = rows["extended"]
    assert stopped["status"] == "stopped" and 600 <= stopped["steps"] < 10_000_000
    assert stopped["total_steps"] == 10_000_000
    evaluations = read_evaluations(trained / "dqn_2")
    assert rows["finished"]["last"] == evaluations[-1]["eval/mean_return"]
    assert rows["finished"]["best"] == max(row["eval/mean_return"] for row in evaluations)

    text = rlkit("runs", cwd=tmp_path)  # default ./runs: there is none here
    assert text.returncode == 2 and "is not a directory" in text.stderr
    table = rlkit("runs", str(tmp_path)).stdout.splitlines()
    assert table[0].split() == ["run", "what", "steps", "best", "eval", "last", "eval", "time", "status"]
    assert table[2].split()[:5] == ["finished", "dqn/CartPole", "600", "of", "600"] and table[2].endswith("finished")
    assert table[1].startswith("extended") and table[1].endswith("stopped")


def hand_made_run(path: Path, steps: int | None, total: int, returns: list[float], job: str = "agent") -> Path:
    """A run directory written by hand: config.json, eval.jsonl (every 100 steps) and optionally a checkpoint."""
    path.mkdir(parents=True)
    settings = ({"agent": "ppo", "env": "CartPole", "total_steps": total, "seed": 1} if job == "agent" else
                {"task": "mnist", "net": "cnn", "max_steps": total, "seed": 1, "data_dir": "data"})
    (path / "config.json").write_text(json.dumps({"job": job, "settings": settings, "config": {}}))
    metric = "eval/mean_return" if job == "agent" else "eval/accuracy"
    (path / "eval.jsonl").write_text("".join(json.dumps({"step": 100 * (i + 1), metric: value}) + "\n"
                                             for i, value in enumerate(returns)))
    if steps is not None:
        save_checkpoint(path / "checkpoint.pt", {"job": job, "settings": settings,
                                                 "loop": {"steps": steps, "wall_time": 3725.0}})
    return path


def test_runs_rows_of_hand_made_runs(tmp_path, capsys):
    hand_made_run(tmp_path / "a" / "done", 300, 300, [10.0, 30.0, 20.0])
    hand_made_run(tmp_path / "b" / "cut", 100, 300, [5.0])
    hand_made_run(tmp_path / "fresh", None, 300, [])
    hand_made_run(tmp_path / "mnist", 50, 50, [0.5, 0.9], job="classifier")
    hand_made_run(tmp_path / "epochs", 40, 0, [0.7], job="classifier")  # max_steps 0: its epochs, length unknown
    hand_made_run(tmp_path / "broken", 300, 300, [1.0])
    (tmp_path / "broken" / "checkpoint.pt").write_bytes(b"PK\x03\x04 not really a zip")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "config.json").write_text("{}")  # someone else's config.json: passed over, said so
    rows = {row["name"]: row for row in runs_cli.main([str(tmp_path), "--json"])}
    assert capsys.readouterr().err.startswith(f"skipped: {tmp_path / 'notes'} has no readable config.json")
    assert set(rows) == {"a/done", "b/cut", "fresh", "mnist", "epochs", "broken"}
    assert rows["a/done"] | {"path": None} == {
        "name": "a/done", "path": None, "job": "agent", "env": "CartPole", "agent": "ppo", "seed": 1, "steps": 300,
        "total_steps": 300, "metric": "eval/mean_return", "best": 30.0, "best_step": 200, "last": 20.0,
        "last_step": 300, "evaluations": 3, "wall_time": 3725.0, "checkpoint": "ok", "status": "finished"}
    assert rows["b/cut"]["status"] == "stopped" and rows["b/cut"]["steps"] == 100
    assert rows["fresh"]["checkpoint"] == "missing" and rows["fresh"]["status"] == "stopped"
    assert rows["mnist"]["net"] == "cnn" and rows["mnist"]["best"] == 0.9 and rows["mnist"]["status"] == "finished"
    assert rows["epochs"]["total_steps"] is None and rows["epochs"]["status"] == "ended"
    assert rows["broken"]["checkpoint"] == "damaged" and rows["broken"]["status"] == "stopped"

    with RunLock(tmp_path / "b" / "cut"):
        assert runs_cli.describe(find_runs([tmp_path / "b" / "cut"])[0], tmp_path)["status"] == "running"
    capsys.readouterr()
    runs_cli.main([str(tmp_path)])
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert lines["a/done"].split() == ["a/done", "ppo/CartPole", "300", "of", "300", "30", "20", "1:02:05", "finished"]
    assert "damaged checkpoint" in lines["broken"] and "Traceback" not in lines["broken"]
    assert lines["fresh"].split()[2:] == ["-", "of", "300", "-", "-", "-", "stopped"]
    assert lines["epochs"].split()[1:5] == ["cnn/mnist", "40", "of", "?"]


def test_runs_of_an_empty_folder(tmp_path, capsys):
    assert runs_cli.main([str(tmp_path)]) == []
    assert capsys.readouterr().out == f"no runs in {tmp_path}\n"


def test_is_locked_follows_the_lock(tmp_path):
    assert not is_locked(tmp_path)  # no lock file
    lock = RunLock(tmp_path)
    assert is_locked(tmp_path)
    lock.release()
    assert not is_locked(tmp_path)
    (tmp_path / "lock").write_text(json.dumps({"pid": 999_999_999, "host": "elsewhere"}))  # a killed run's file
    assert not is_locked(tmp_path)


# ---------------------------------------------------------------------------------------------------- curves
def test_smooth_is_a_trailing_mean():
    np.testing.assert_allclose(smooth([1, 2, 3, 4], 2), [1, 1.5, 2.5, 3.5])
    np.testing.assert_allclose(smooth([1, 2, 3, 4], 3), [1, 1.5, 2, 3])
    np.testing.assert_allclose(smooth([4, 8], 1), [4, 8])


def test_aggregate_same_steps_mean_std_min_max():
    band = aggregate([Curve(np.array([10, 20, 30.]), np.array([0, 2, 4.])),
                      Curve(np.array([10, 20, 30.]), np.array([2, 2, 8.]))])
    np.testing.assert_allclose(band.x, [10, 20, 30])
    np.testing.assert_allclose(band.mean, [1, 2, 6])
    np.testing.assert_allclose(band.std, [1, 0, 2])
    np.testing.assert_allclose(band.low, [0, 2, 4])
    np.testing.assert_allclose(band.high, [2, 2, 8])
    assert band.runs == 2


def test_aggregate_interpolates_on_the_common_range():
    band = aggregate([Curve(np.array([0, 10, 20.]), np.array([0, 10, 20.])),
                      Curve(np.array([5, 15, 25.]), np.array([1, 1, 1.]))])
    np.testing.assert_allclose(band.x, [5, 10, 15, 20])  # from the later start to the earlier end
    np.testing.assert_allclose(band.mean, [3, 5.5, 8, 10.5])
    with pytest.raises(ValueError, match="share no range"):
        aggregate([Curve(np.array([0, 1.]), np.array([0, 0.])), Curve(np.array([2, 3.]), np.array([0, 0.]))])


def test_find_and_group_runs_of_a_nested_folder(tmp_path):
    for seed, returns in [(1, [10.0, 20.0, 30.0]), (2, [20.0, 40.0, 60.0]), (3, [30.0, 30.0, 30.0])]:
        run = hand_made_run(tmp_path / "ppo" / f"s{seed}", None, 300, returns)
        config = json.loads((run / "config.json").read_text())
        config["settings"]["seed"] = seed
        (run / "config.json").write_text(json.dumps(config))
    hand_made_run(tmp_path / "mnist", None, 50, [0.5, 0.9], job="classifier")
    runs = find_runs([tmp_path])
    groups = group_runs(runs)
    assert list(groups) == [("CartPole", "ppo"), ("mnist", "cnn")]
    assert [run.seed for run in groups[("CartPole", "ppo")]] == [1, 2, 3]
    assert groups[("mnist", "cnn")][0].metric == "eval/accuracy"

    lines = collect_lines(runs)  # eval metrics from eval.jsonl; no TensorBoard files here, so no training curves
    assert [(line.group, line.metric) for line in lines] == [(("CartPole", "ppo"), "eval/mean_return"),
                                                             (("mnist", "cnn"), "eval/accuracy")]
    band = lines[0].band
    np.testing.assert_allclose(band.x, [100, 200, 300])
    np.testing.assert_allclose(band.mean, [20, 30, 40])
    np.testing.assert_allclose(band.std, [np.sqrt(200 / 3), np.sqrt(200 / 3), np.sqrt(200)])
    np.testing.assert_allclose(band.low, [10, 20, 30])
    np.testing.assert_allclose(band.high, [30, 40, 60])


def test_eval_rows_skip_a_torn_line_and_summarize(tmp_path):
    (tmp_path / "eval.jsonl").write_text('{"step": 200, "eval/mean_return": 5}\n{"step": 100, "eval/mean_return": 7}\n'
                                         '{"step": 300, "eval/mean_return": NaN}\n{"step": 400, "eval/me')
    rows = read_evaluations(tmp_path)
    assert [row["step"] for row in rows] == [100, 200, 300]
    curve = eval_curve(rows, "eval/mean_return")
    np.testing.assert_allclose(curve.x, [100, 200])
    assert summarize(rows, "eval/mean_return") == {"best": 7.0, "best_step": 100, "last": 5.0, "last_step": 200,
                                                   "evaluations": 2}


def test_scalars_of_a_resumed_run_drop_what_its_checkpoint_did_not_keep(tmp_path):
    """As TensorBoard does: the resumed writer's purge step hides the killed process's later steps."""
    from torch.utils.tensorboard import SummaryWriter

    first = SummaryWriter(str(tmp_path))
    for step in range(1, 11):
        first.add_scalar("charts/episodic_return", step, step)
    first.close()
    time.sleep(0.05)
    resumed = SummaryWriter(str(tmp_path), purge_step=6)
    for step in (6, 7, 8):
        resumed.add_scalar("charts/episodic_return", 100 + step, step)
    resumed.close()
    tag = read_scalars(tmp_path)["charts/episodic_return"]
    np.testing.assert_array_equal(tag.step, [1, 2, 3, 4, 5, 6, 7, 8])
    np.testing.assert_array_equal(tag.value, [1, 2, 3, 4, 5, 106, 107, 108])
    assert np.all(np.diff(tag.time) >= 0)  # the resumed clock continues from step 5's time


# ---------------------------------------------------------------------------------------------------- the wheel
def checked(*command: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    """Run ``command`` without this checkout on the path; it must succeed."""
    env = {key: value for key, value in ENV.items() if key != "PYTHONPATH"}
    done = subprocess.run([str(part) for part in command], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.mark.slow
def test_the_built_wheel_has_the_command(tmp_path):
    """``pip wheel`` of a copy of the project, installed (not editable) into a fresh venv: its ``rlkit`` runs from
    a directory outside the checkout and imports the installed package."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source)
    shutil.copytree(ROOT / "rlkit", source / "rlkit", ignore=shutil.ignore_patterns("__pycache__"))
    outside = tmp_path / "elsewhere"  # not the checkout: nothing there to import rlkit from
    outside.mkdir()
    checked(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path / "out",
            ".", cwd=source)
    (wheel,) = (tmp_path / "out").glob("rlkit-*.whl")
    venv = tmp_path / "venv"
    checked(sys.executable, "-m", "venv", "--system-site-packages", venv, cwd=outside)
    checked(venv / "bin" / "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", wheel, cwd=outside)
    where = checked(venv / "bin" / "python", "-c", "import rlkit.cli.main as m; print(m.__file__)", cwd=outside)
    assert Path(where.stdout.strip()).is_relative_to(venv)
    assert "\n  plot " in checked(venv / "bin" / "rlkit", "--help", cwd=outside).stdout
    printed = json.loads(checked(venv / "bin" / "rlkit", "train", "--agent", "dqn", "--env", "CartPole",
                                 "--print-config", cwd=outside).stdout)
    assert printed["settings"]["agent"] == "dqn" and printed["settings"]["env"] == "CartPole"


def test_hints_name_the_command_the_user_ran(tmp_path, capsys, monkeypatch):
    """Under ``rlkit train`` the next step reads ``rlkit eval RUN_DIR``; from a checkout's train.py it reads
    ``python evaluate.py RUN_DIR`` (both said ``python evaluate.py`` before)."""
    import train as train_script
    from rlkit.cli.main import main as rlkit_main

    monkeypatch.setattr(sys, "argv", ["/usr/bin/rlkit"])
    rlkit_main(["train", *TINY_DQN, "--run-dir", str(tmp_path / "a")])
    assert f"then   rlkit eval {tmp_path / 'a'}" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        rlkit_main(["train", *TINY_DQN, "--no-such-flag"])
    assert "see rlkit train --agent dqn --env CartPole --help" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", ["train.py"])
    train_script.main([*TINY_DQN, "--run-dir", str(tmp_path / "b")])
    assert f"then   python evaluate.py {tmp_path / 'b'}" in capsys.readouterr().out
