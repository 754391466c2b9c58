"""Every registered agent and every ``--net``, found by walking the registries (a newly registered one is tested
without anyone adding it here): a short run through ``train.main``, its checkpoint, ``evaluate.main`` on the run
directory, the policy (or net) surviving save and load, and two runs with one seed being the same run."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

import evaluate
import train
from rlkit.agents import AGENTS
from rlkit.data import make_tiny_dataset, make_tiny_ucf
from rlkit.envs import resolve_env
from rlkit.envs.custom import one_hot_observations
from rlkit.errors import UserError
from rlkit.jobs import NETS, read_checkpoint

# ---------------------------------------------------------------------------------------------------- agents
TOY_ENVS = ((gym.spaces.Discrete, "CartPole"), (gym.spaces.Box, "Pendulum"), (gym.spaces.Discrete, "FrozenLake"))
"""The toy env each kind of action space is trained on: the first one whose observations the agent reads (a table
reads only toy text's)."""

SMALL = {
    "buffer_size": 1000, "batch_size": 32, "learning_starts": 100, "train_frequency": 4, "gradient_steps": 1,
    "target_update_interval": 50, "hidden": (16, 16), "eval_epsilon": 0.0, "num_heads": 2, "num_steps": 16,
    "update_epochs": 2, "num_minibatches": 2, "critic_epochs": 2, "critic_minibatch_size": 16, "cg_iters": 5,
    "num_workers": 1,
}
"""Config field -> value that keeps a run to a second or two; each agent gets the flags for the fields its config
has. ``eval_epsilon`` 0 makes DQN's evaluation greedy, so it draws no random numbers and a rebuilt agent plays the
same games as the one that trained."""

TOTAL_STEPS, EVAL_EPISODES, SEED = 320, 2, 3  # 320: whole rollouts of 16 steps x 2 envs


def agent_cases() -> list:
    cases = []
    for name, spec in AGENTS.items():
        for kind in dict(TOY_ENVS):
            fitting = [env for space, env in TOY_ENVS if space is kind and reads(spec.agent_class, env)]
            if issubclass(kind, spec.agent_class.action_spaces) and fitting:
                cases.append(pytest.param(name, fitting[0], id=f"{name}-{fitting[0]}"))
    return cases


def reads(agent_class: type, env_id: str) -> bool:
    """Whether the agent takes ``env_id``'s spaces as make_env gives them (toy text one-hot coded)."""
    env = one_hot_observations(gym.make(resolve_env(env_id).env_id))
    try:
        agent_class.check_spaces(env.observation_space, env.action_space)
        return True
    except UserError:
        return False
    finally:
        env.close()


def small_flags(name: str) -> list[str]:
    """The flags of :data:`SMALL` that the agent reads: its config has the field, and the variant switches on what
    the field needs (``num_heads`` only for bootstrapped DQN)."""
    from rlkit.config import read_only_with

    spec = AGENTS[name]
    config = spec.agent_class.config_class(**spec.variant)
    fields = {f.name for f in dataclasses.fields(config) if f.init}
    rules = read_only_with(type(config))
    flags = []
    for field, value in SMALL.items():
        if field in fields and (field not in rules or getattr(config, rules[field][0]) in rules[field][1]):
            flags += [f"--{field.replace('_', '-')}", *map(str, value if isinstance(value, tuple) else (value,))]
    return flags


def train_agent(name: str, env: str, run: Path) -> Path:
    train.main(["--agent", name, "--env", env, "--total-steps", str(TOTAL_STEPS), "--num-envs", "2",
                "--seed", str(SEED), "--eval-episodes", str(EVAL_EPISODES), "--eval-interval", str(TOTAL_STEPS),
                "--no-progress", "--run-dir", str(run), *small_flags(name)])
    return run


@pytest.fixture(scope="module")
def agent_runs(tmp_path_factory):
    """(agent, env) -> two run directories trained with the same seed, made on first use. Read-only."""
    made: dict[tuple[str, str], tuple[Path, Path]] = {}

    def get(name: str, env: str) -> tuple[Path, Path]:
        if (name, env) not in made:
            folder = tmp_path_factory.mktemp(f"{name}-{env}")
            made[name, env] = (train_agent(name, env, folder / "a"), train_agent(name, env, folder / "b"))
        return made[name, env]

    return get


def evals(run: Path) -> list[dict[str, float]]:
    """The run's evaluations without their wall time (the one thing a same-seed run does not repeat)."""
    return [{k: v for k, v in json.loads(line).items() if k not in ("wall_time", "eval_seconds")}
            for line in (run / "eval.jsonl").read_text().splitlines()]


def leaves(tree: Any, path: str = "") -> dict[str, Any]:
    """Every leaf of nested dicts and lists, keyed by its path."""
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() for k, v in leaves(value, f"{path}/{key}").items()}
    if isinstance(tree, (list, tuple)):
        return {k: v for i, value in enumerate(tree) for k, v in leaves(value, f"{path}/{i}").items()}
    return {path: tree}


def assert_same_tree(a: Any, b: Any) -> None:
    a, b = leaves(a), leaves(b)
    assert a.keys() == b.keys()
    assert any(isinstance(v, torch.Tensor) for v in a.values())  # the comparison is not vacuous
    for key, value in a.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, b[key]), key
        else:
            assert value == b[key], key


def learner_state(run: Path) -> dict[str, Any]:
    return read_checkpoint(run)["learner"]


@pytest.mark.parametrize("name, env", agent_cases())
def test_agent_trains_checkpoints_and_evaluates(agent_runs, name, env, capsys):
    run, _ = agent_runs(name, env)
    assert (run / "checkpoint.pt").is_file() and (run / "config.json").is_file()
    assert [e["step"] for e in evals(run)] == [TOTAL_STEPS]  # one evaluation, the final one
    result = evaluate.main([str(run), "--json", "--episodes", "3", "--seed", "5"])
    assert result["agent"] == name and result["env"] == env and result["episodes"] == 3
    assert len(result["returns"]) == 3 and result["mean_return"] == pytest.approx(np.mean(result["returns"]))
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result  # --json prints what it returns


@pytest.mark.parametrize("name, env", agent_cases())
def test_greedy_policy_survives_save_and_load(agent_runs, name, env):
    """evaluate.py rebuilds the agent from the checkpoint alone and, on the games the training run evaluated on
    (seed settings.seed + 10_000, the same count), reports the returns that run logged at its last step."""
    run, _ = agent_runs(name, env)
    logged = evals(run)[-1]
    result = evaluate.main([str(run), "--json", "--episodes", str(EVAL_EPISODES), "--seed", str(SEED + 10_000)])
    assert result["mean_return"] == logged["eval/mean_return"]
    assert result["std_return"] == logged["eval/std_return"]


@pytest.mark.parametrize("name, env", agent_cases())
def test_same_seed_same_run(agent_runs, name, env):
    """Two runs with one seed log the same evaluations and end with the same learner state (weights, optimizer
    moments, counters)."""
    # A3C's workers are hogwild processes: with two or more, whose gradient lands first depends on the OS
    # scheduler and two runs differ. SMALL runs it with one worker, which claims its segments in turn: one run.
    a, b = agent_runs(name, env)
    assert evals(a) == evals(b)
    assert_same_tree(learner_state(a), learner_state(b))


# ---------------------------------------------------------------------------------------------------- nets
SMALL_NET = {
    "numpy-mlp": ["--hidden", "8"], "numpy-cnn": ["--conv-channels", "2", "--kernel-size", "3"],
    "cnn": ["--width", "0.125"], "resnet": ["--width", "0.125"], "discriminator": ["--width", "0.05"],
    "acgan": ["--width", "8"], "resnet18": ["--input-size", "32"], "resnet50": ["--input-size", "32"],
    "densenet": ["--depth", "10", "--growth", "4"], "densenet121": ["--input-size", "32"],
    "frame-resnet18": [], "frame-resnet50": ["--freeze-except", "layer4", "fc"], "r3d18": ["--width", "0.125"],
    "cnn-lstm": ["--width", "0.125", "--lstm-hidden", "16"],
    "flow-resnet18": ["--flow-stack", "4"], "flow-resnet50": ["--flow-stack", "4"],
    "feature-lstm": ["--lstm-hidden", "16"],
}
"""Per net, flags that make one update quick on a CPU; a net not listed here runs with its recipe's sizes."""
VIDEO_FLAGS = ["--input-size", "32", "--clip-length", "8", "--test-frames", "4", "--test-clips", "2"]


def is_video(spec: Any) -> bool:
    return spec.job == "video"


@pytest.fixture(scope="module")
def mnist(tmp_path_factory) -> Path:
    return make_tiny_dataset("mnist", tmp_path_factory.mktemp("mnist"), train=64, test=32, seed=0)


@pytest.fixture(scope="module")
def ucf(tmp_path_factory) -> Path:
    return make_tiny_ucf(tmp_path_factory.mktemp("ucf"), classes=3, videos_per_class=4, frames=16, size=32, seed=0)


@pytest.fixture(scope="module")
def ucf_flow(ucf, tmp_path_factory) -> list[str]:
    """The flags of a flow net: the tiny UCF-101's optical flow."""
    from rlkit.data.flow import extract_flow

    out = tmp_path_factory.mktemp("flow")
    extract_flow(ucf, out)
    return ["--flow-dir", str(out)]


@pytest.fixture(scope="module")
def ucf_features(ucf, tmp_path_factory) -> list[str]:
    """The flags of a feature net: the tiny UCF-101's frame-resnet18 features (random weights)."""
    from rlkit.data.features import extract_features
    from rlkit.jobs.video import frame_feature_extractor

    out = tmp_path_factory.mktemp("features")
    encode, transform, meta, device = frame_feature_extractor("frame-resnet18", input_size=32, device="cpu")
    extract_features(ucf, out, encode, transform, meta, device=device)
    return ["--features-dir", str(out)]


INPUT_FIXTURES = {"flow": "ucf_flow", "features": "ucf_features"}
"""Per kind of precomputed video input, the fixture giving its flags."""


@pytest.mark.parametrize("net", list(NETS))
def test_every_net_takes_one_update_saves_and_evaluates(net, request, tmp_path):
    """One update on tiny data in the official format, saved; evaluate.py rebuilds the net from the run directory,
    scores the test set as the run's own final evaluation did, and scores it the same way twice (every net is
    deterministic in eval mode)."""
    video = is_video(NETS[net])
    task, data = ("ucf101", request.getfixturevalue("ucf")) if video else ("mnist", request.getfixturevalue("mnist"))
    fixture = INPUT_FIXTURES.get(getattr(NETS[net], "input", ""))
    inputs = request.getfixturevalue(fixture) if fixture else []
    run = tmp_path / "run"
    train.main(["--task", task, "--net", net, "--data-dir", str(data), "--max-steps", "1", "--batch-size", "4",
                "--run-dir", str(run), "--no-progress", *SMALL_NET.get(net, []), *(VIDEO_FLAGS if video else []),
                *inputs])
    assert (run / "checkpoint.pt").is_file()
    first = evaluate.main([str(run), "--json"])
    assert first["net"] == net and first["task"] == task and first["steps"] == 1
    logged = {key.removeprefix("eval/"): value for key, value in evals(run)[-1].items() if key != "step"}
    shared = {key for key in logged if isinstance(first.get(key), float)}
    assert shared, (logged, first)  # at least one number both report
    for key in shared:
        assert first[key] == pytest.approx(logged[key], rel=1e-5, abs=1e-6), key
    assert evaluate.main([str(run), "--json"]) == first
