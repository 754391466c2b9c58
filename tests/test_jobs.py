"""The job contract: one registry that train.py and evaluate.py only look jobs up in, one rebuild path per kind,
saved runs validated before use."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest

import evaluate
import train
from rlkit.checkpoint import save_checkpoint
from rlkit.cli.evaluate import build_parser as evaluate_parser
from rlkit.errors import UserError
from rlkit.jobs import JOBS, NETS, job_of, read_checkpoint, select_job, upgrade
from rlkit.jobs.base import Job

V1 = Path(__file__).parent / "data" / "v1"


@pytest.mark.parametrize("kind", list(JOBS))
def test_every_job_is_registered_under_its_kind_and_has_report_flags(kind):
    job = JOBS[kind]
    assert isinstance(job, Job) and job.kind == kind
    parser = argparse.ArgumentParser()
    job.add_report_flags(parser)
    assert parser._actions[1:], f"{kind} adds no evaluate.py flags"  # 0 is --help


@pytest.mark.parametrize("net", list(NETS))
def test_every_net_selects_the_job_its_row_names(net):
    task = "ucf101" if NETS[net].job == "video" else "mnist"
    assert select_job(None, task, net).kind == NETS[net].job


def test_selecting_two_kinds_or_none_is_one_line():
    with pytest.raises(UserError, match="two kinds of run"):
        select_job("dqn", "mnist", None)
    with pytest.raises(UserError, match="say what to train"):
        select_job(None, None, None)


def test_version_1_checkpoints_are_read_as_version_2():
    dqn = read_checkpoint(V1 / "dqn.pt")
    assert dqn["version"] == 2 and dqn["job"] == "agent" and dqn["settings"]["agent"] == "dqn"
    assert dqn["config"]["hidden"] == [16, 16] and "agent_config" not in dqn and "kind" not in dqn
    numpy = read_checkpoint(V1 / "numpy.pt")
    assert numpy["job"] == "classifier" and numpy["settings"]["net"] == "numpy-mlp"
    assert upgrade(numpy) is numpy  # already current
    with pytest.raises(UserError, match="unknown net"):
        upgrade({"version": 1, "kind": "supervised", "net": "nonsense"})
    with pytest.raises(UserError, match="unknown kind of run"):
        job_of({"version": 2, "job": "nonsense"})


@pytest.mark.parametrize("damage", [
    {"settings": None}, {"settings": {"agent": "dqn"}}, {"settings": {"agent": "dqn", "env": "CartPole",
                                                                     "total_steps": 1, "colour": "red"}},
    {"config": {"learning_rate": 1e-3, "wings": 2}}, {"learner": {"q_net": {}}},
])
def test_a_damaged_checkpoint_is_one_line_not_a_traceback(damage, tmp_path):
    checkpoint = {**read_checkpoint(V1 / "dqn.pt"), **damage}
    save_checkpoint(tmp_path / "run" / "checkpoint.pt", checkpoint)
    with pytest.raises(UserError) as error:
        evaluate.main([str(tmp_path / "run"), "--episodes", "1"])
    assert "\n" not in str(error.value) and "train.py" in str(error.value)


def test_evaluate_refuses_flags_of_another_kind_of_run(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(V1 / "dqn.pt", run / "checkpoint.pt")
    with pytest.raises(UserError, match="^--mc-samples is a flag of classifier runs, and this is an agent run"):
        evaluate.main([str(run), "--mc-samples", "3"])  # a classifier's flag: an agent would ignore it
    help_text = evaluate_parser(None).format_help()
    for flag in ("--episodes", "--mc-samples", "--judge", "--fuse"):  # without a run: every kind's flags
        assert flag in help_text


def test_resuming_refuses_a_changed_config_or_setting_but_extends_the_budget(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(V1 / "dqn.pt", run / "checkpoint.pt")
    for flags, message in ((["--learning-rate", "0.5"], "--learning-rate 0.5 differs"),
                           (["--seed", "9"], "--seed 9 differs"), (["--env", "Acrobot"], "--env Acrobot differs"),
                           (["--run-dir", str(tmp_path / "x")], "--run-dir cannot be used with --resume")):
        with pytest.raises(UserError, match=message):
            train.main(["--resume", str(run), *flags])
    train.main(["--resume", str(run), "--total-steps", "700", "--seed", "1", "--no-progress"])  # same seed: fine
    resumed = read_checkpoint(run)
    assert resumed["version"] == 2 and resumed["loop"]["steps"] == 700 and resumed["settings"]["total_steps"] == 700


def test_an_unknown_flag_is_one_line_naming_where_the_flags_are(capsys):
    with pytest.raises(SystemExit) as exit_:
        train.main(["--agent", "trpo", "--env", "CartPole", "--no-such-flag", "0.1"])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and "\n" not in err
    assert "--no-such-flag 0.1" in err and "python train.py --agent trpo --env CartPole --help" in err
    with pytest.raises(UserError, match=r"--ent-coef is a flag of .*, not of trpo: drop it \(python train.py "
                                        r"--agent trpo --env CartPole --help lists its flags\)"):
        train.main(["--agent", "trpo", "--env", "CartPole", "--ent-coef", "0.1"])  # TRPO has no entropy term


def test_help_without_an_env_shows_the_agents_own_variant(capsys):
    """Before the env family is known, td3's help still shows td3's values (twin critics), not DDPG's."""
    with pytest.raises(SystemExit):
        train.main(["--agent", "td3", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--twin-critics, --no-twin-critics TD3: two critics" in text
    assert "(against overestimation). (default: True)" in text and "before the env family's" in text


def test_resume_applies_the_intervals_it_may_change_and_refuses_a_budget_below_the_steps_taken(tmp_path):
    """D8: --eval-interval and --checkpoint-interval apply to a resumed run; a --total-steps below the steps already
    taken is refused instead of rewriting the budget."""
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(V1 / "dqn.pt", run / "checkpoint.pt")  # 600 steps taken
    with pytest.raises(UserError, match="--total-steps 500 is below the 600 steps"):
        train.main(["--resume", str(run), "--total-steps", "500"])
    train.main(["--resume", str(run), "--total-steps", "800", "--eval-interval", "100", "--checkpoint-interval", "150",
                "--eval-episodes", "2", "--no-progress"])
    resumed = read_checkpoint(run)
    assert (resumed["settings"]["eval_interval"], resumed["settings"]["checkpoint_interval"]) == (100, 150)
    steps = [int(line.split('"step": ')[1].split(",")[0]) for line in (run / "eval.jsonl").read_text().splitlines()]
    assert steps == [700, 800]


def test_extending_a_run_keeps_its_schedules_unless_asked_to_stretch_them(tmp_path):
    """D9: epsilon, learning-rate annealing and PER beta stretch over the first run's budget after a resume that
    extends it; --stretch-schedules stretches them over the new one (and means nothing without --resume)."""
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(V1 / "dqn.pt", run / "checkpoint.pt")
    train.main(["--resume", str(run), "--total-steps", "700", "--no-progress"])
    agent, settings = JOBS["agent"].rebuild(read_checkpoint(run))
    assert (settings.total_steps, settings.schedule_steps, agent.total_steps) == (700, 600, 600)
    train.main(["--resume", str(run), "--total-steps", "900", "--stretch-schedules", "--no-progress"])
    agent, settings = JOBS["agent"].rebuild(read_checkpoint(run))
    assert (settings.total_steps, settings.schedule_steps, agent.total_steps) == (900, 900, 900)
    with pytest.raises(UserError, match="use it with --resume"):
        train.main(["--agent", "dqn", "--env", "CartPole", "--stretch-schedules", "--run-dir", str(tmp_path / "new")])


@pytest.mark.parametrize("flag, omp, convolutional, expected", [
    (3, "1", True, 3), (0, "2", False, 2), (0, "", False, 1), (0, "", True, None),
])
def test_threads_flag_then_omp_num_threads_then_one_or_the_cores_for_large_convolutions(
        monkeypatch, flag, omp, convolutional, expected):
    import os

    import torch

    from rlkit.runtime import set_threads

    monkeypatch.setenv("OMP_NUM_THREADS", omp)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    before = torch.get_num_threads()
    try:
        got = set_threads(flag, convolutional)
        assert got == (expected or os.cpu_count()) == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("agent, env, flags, expected", [
    ("ppo", "Breakout", ["--num-envs", "2", "--total-steps", "512"], 0),  # two rollouts: only the final evaluation
    ("ppo", "CartPole", ["--total-steps", "100000"], 10_000),
    ("dqn", "CartPole", ["--total-steps", "2000"], 200),
])
def test_the_default_evaluation_interval_is_a_tenth_and_a_tiny_run_evaluates_once(agent, env, flags, expected, capsys):
    """Issue 17 item 9: a run too short to evaluate twice before its end (in whole rollouts) evaluates at the end."""
    train.main(["--agent", agent, "--env", env, *flags, "--print-config"])
    assert json.loads(capsys.readouterr().out)["settings"]["eval_interval"] == expected


@pytest.mark.parametrize("argv, message", [
    (["--net", "resnet18", "--depth", "40"], "--depth shapes the densenet net; resnet18 does not read it"),
    (["--net", "densenet", "--width", "0.5"], "--width shapes the cnn, resnet, discriminator nets; densenet does not"),
    (["--net", "cnn", "--hidden", "64"], "drop --hidden"),
    # --dropout on a net without dropout was accepted and ignored, as --bn-recalibration would be
    # (the nets named are those of the run's kind: image nets here, not the video nets that also read it)
    (["--net", "numpy-mlp", "--dropout", "0.3"], "--dropout applies to the cnn, resnet, densenet, lstm, gru nets; "
                                                 "numpy-mlp does not read it: drop"),
    (["--net", "resnet18", "--dropout", "0.1"], "resnet18 does not read it: drop --dropout"),
    (["--net", "lstm", "--bn-recalibration", "5"], "--bn-recalibration applies to the cnn, resnet, densenet nets; "
                                                   "lstm does not read it"),

    # augmentation flags the run's augmentation ignores were accepted too
    (["--net", "cnn", "--no-augment", "--crop-padding", "3"],
     "--crop-padding sets the training augmentation, which --no-augment turns off: drop --crop-padding"),
    (["--net", "lstm", "--augmentation", "crop"],
     "--augmentation sets the training augmentation, which lstm trains without \\(add --augment to use it\\)"),
    (["--net", "discriminator", "--crop-padding", "2"],
     "--crop-padding pads the random crop of --augmentation crop; resized-crop-jitter crops without padding"),

    # so were the flags of another optimizer or schedule
    (["--net", "cnn", "--momentum", "0.5"],
     "--momentum is read by --optimizer sgd and rmsprop; this run's --optimizer is adam: drop --momentum \\(or add "
     "--optimizer sgd\\)"),
    (["--net", "cnn", "--schedule", "cosine", "--milestones", "3", "5"],
     "--milestones is read by --schedule multistep; this run's --schedule is cosine"),
    (["--net", "numpy-mlp", "--milestones", "3"], "this run's --schedule is step"),  # the NumPy recipe's
    (["--net", "cnn", "--optimizer", "sgd", "--gamma", "0.5"], "--gamma is read by --schedule step and multistep"),
    (["--net", "cnn", "--optimizer", "lbfgs", "--hf-damping", "2"], "this run's --optimizer is lbfgs"),
    (["--net", "cnn", "--lbfgs-history", "5"], "--lbfgs-history is read by --optimizer lbfgs"),
])
def test_a_flag_the_run_does_not_read_is_refused(argv, message):
    """Each net declares the fields it reads, each optimizer and schedule too (READ_ONLY_WITH); a flag for another
    (accepted and ignored before) is an error."""
    import train

    with pytest.raises(UserError, match=message):
        train.main(["--task", "mnist", *argv, "--print-config"])
