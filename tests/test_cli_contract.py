"""What the command line promises: ``--help`` shows the values that will run, ``--print-config`` prints them,
evaluation does not change training, and checkpoints of format version 1 still evaluate and resume."""

from __future__ import annotations

import ast
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

import evaluate
import train
from rlkit.data import make_tiny_dataset
from rlkit.jobs import read_checkpoint

V1 = Path(__file__).parent / "data" / "v1"


# ---------------------------------------------------------------------------------------------------- --help
def help_defaults(argv: list[str], capsys) -> dict[str, Any]:
    """``train.py ARGV --help``: option string -> the value its help gives as ``(default: VALUE)``."""
    with pytest.raises(SystemExit) as exited:
        train.main([*argv, "--help"])
    assert exited.value.code in (0, None)
    entries: list[list[str]] = []
    for line in capsys.readouterr().out.splitlines():
        if re.match(r"^  -", line):  # an option's first line; its help continues on deeper-indented lines
            entries.append([line])
        elif entries and line.startswith("   "):
            entries[-1].append(line)
        else:
            entries.append([])  # a group title or blank line ends the entry
    defaults = {}
    for entry in filter(None, entries):
        text = " ".join(" ".join(entry).split())
        found = re.findall(r"\(default: ([^()]*(?:\([^()]*\))?[^()]*)\)", text)
        names = re.split(r"\s{2,}", entry[0].strip())[0]
        for option in names.split(", "):
            if found:
                defaults[option.split(" ")[0]] = literal(found[-1])
    return defaults


def literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def test_help_of_td3_on_halfcheetah_shows_the_preset(capsys):
    """TD3 runs with twin critics, target noise 0.2 and a policy update every 2 critic updates; --help says so
    (today it shows DDPGConfig's class defaults: False, 0.0, 1)."""
    defaults = help_defaults(["--agent", "td3", "--env", "HalfCheetah"], capsys)
    assert defaults["--twin-critics"] is True
    assert defaults["--target-policy-noise"] == 0.2
    assert defaults["--policy-frequency"] == 2


def test_help_of_dqn_on_cartpole_shows_the_preset(capsys):
    """DQN on CartPole runs rl-baselines3-zoo's values (today --help shows the Atari class defaults 32, 1e-4, 1M)."""
    defaults = help_defaults(["--agent", "dqn", "--env", "CartPole"], capsys)
    assert defaults["--batch-size"] == 64
    assert defaults["--learning-rate"] == 0.0023
    assert defaults["--buffer-size"] == 100_000


# ---------------------------------------------------------------------------------------------------- --print-config
def print_config(argv: list[str], capsys) -> Any:
    try:
        train.main([*argv, "--print-config"])
    except SystemExit as exited:
        assert exited.code in (0, None), f"--print-config exited with {exited.code}"
    return json.loads(capsys.readouterr().out)


def find_key(tree: Any, key: str) -> list[Any]:
    """Every value stored under ``key`` anywhere in nested JSON."""
    if isinstance(tree, dict):
        return [v for k, value in tree.items() for v in ([value] if k == key else []) + find_key(value, key)]
    if isinstance(tree, list):
        return [v for value in tree for v in find_key(value, key)]
    return []


def test_print_config_prints_the_resolved_config_and_starts_no_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the default run directory would be runs/ under here
    run = tmp_path / "run"
    config = print_config(["--agent", "td3", "--env", "HalfCheetah", "--run-dir", str(run)], capsys)
    assert find_key(config, "twin_critics") == [True]
    assert find_key(config, "target_policy_noise") == [0.2] and find_key(config, "policy_frequency") == [2]
    config = print_config(["--agent", "dqn", "--env", "CartPole", "--batch-size", "7"], capsys)
    assert find_key(config, "batch_size") == [7]  # a flag wins over the preset
    assert find_key(config, "learning_rate") == [0.0023] and find_key(config, "buffer_size") == [100_000]
    assert list(tmp_path.iterdir()) == []  # nothing written: no run directory, no runs/


# ---------------------------------------------------------------------------------------------------- evaluation
def test_eval_interval_does_not_change_dqn_training(tmp_path):
    """Evaluation has its own random numbers (eval_epsilon > 0 draws some): a DQN run evaluated every 100 steps
    ends with the weights of the same run evaluated only at its end, and its last evaluation is the same."""
    runs = []
    for interval in (100, 600):
        run = tmp_path / str(interval)
        train.main(["--agent", "dqn", "--env", "CartPole", "--total-steps", "600", "--seed", "4", "--learning-starts",
                    "100", "--train-frequency", "4", "--gradient-steps", "1", "--target-update-interval", "50",
                    "--buffer-size", "1000", "--batch-size", "32", "--hidden", "16", "16", "--eval-epsilon", "0.5",
                    "--eval-episodes", "2", "--eval-interval", str(interval), "--no-progress", "--run-dir", str(run)])
        runs.append(run)
    evals = [[json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()] for run in runs]
    assert [e["step"] for e in evals[0]] == [100, 200, 300, 400, 500, 600] and [e["step"] for e in evals[1]] == [600]
    weights = [network_tensors(learner_state(run)) for run in runs]
    assert weights[0].keys() == weights[1].keys() and len(weights[0]) > 0
    differ = [key for key, value in weights[0].items() if not torch.equal(value, weights[1][key])]
    assert not differ, f"evaluating changed training: {differ}"
    clock = {"wall_time": 0, "eval_seconds": 0}
    assert {**evals[0][-1], **clock} == {**evals[1][-1], **clock}  # all but the clock


def learner_state(run: Path) -> dict[str, Any]:
    return read_checkpoint(run)["learner"]


def network_tensors(tree: Any, path: str = "") -> dict[str, torch.Tensor]:
    """The learner's tensors (weights, optimizer moments), leaving out random-generator states: an evaluation
    generator that was used more often may legitimately differ."""
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() if not re.search("rng|generator", str(key), re.I)
                for k, v in network_tensors(value, f"{path}/{key}").items()}
    if isinstance(tree, (list, tuple)):
        return {k: v for i, value in enumerate(tree) for k, v in network_tensors(value, f"{path}/{i}").items()}
    return {path: tree} if isinstance(tree, torch.Tensor) and tree.is_floating_point() else {}


# ---------------------------------------------------------------------------------------------------- version 1
def expected_v1() -> dict[str, dict[str, Any]]:
    """File stem in tests/data/v1/ -> what evaluate.py printed for it when it was written (README.md there)."""
    lines = [json.loads(line) for line in (V1 / "expected.jsonl").read_text().splitlines()]
    return {"numpy" if "net" in line else line["agent"]: line for line in lines}


@pytest.fixture(scope="module")
def v1_mnist(tmp_path_factory) -> Path:
    """The tiny MNIST the NumPy run trained and was evaluated on, regenerated (same arguments, same bytes)."""
    return make_tiny_dataset("mnist", tmp_path_factory.mktemp("mnist"), train=64, test=32, seed=0)


@pytest.mark.parametrize("stem", sorted(path.stem for path in V1.glob("*.pt")))
def test_version_1_checkpoint_evaluates_and_resumes(stem, v1_mnist, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(V1 / f"{stem}.pt", run / "checkpoint.pt")
    data = ["--data-dir", str(v1_mnist)] if stem == "numpy" else []
    games = [] if stem == "numpy" else ["--episodes", "3", "--seed", "7"]  # a classifier refuses game flags
    expected = expected_v1()[stem]
    result = evaluate.main([str(run), "--json", *games, *data])
    # The weights load exactly; the returns agree to float rounding, which differs between CPUs (SAC's Pendulum
    # returns moved in the 10th digit from an AMD EPYC, where they were written, to an Intel Xeon).
    for key, value in expected.items():
        assert result[key] == (pytest.approx(value, rel=1e-6) if isinstance(value, (float, list)) else value), key

    before = (run / "checkpoint.pt").read_bytes()
    more = ["--max-steps", "6"] if stem == "numpy" else ["--total-steps", str(expected["steps"] + 128)]
    train.main(["--resume", str(run), *more, "--no-progress", *data])
    assert (run / "checkpoint.pt").read_bytes() != before  # a new checkpoint
    resumed = evaluate.main([str(run), "--json", *data])
    assert resumed["steps"] == int(more[1])
