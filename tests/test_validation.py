"""Bad values are refused before anything is built, each with one line naming the flag (issue 17: D11-D13, D21,
and the configurations that cannot learn). The agent cases walk the registry, so a new agent is tested by
declaring its constraints (``CHECKS``)."""

from __future__ import annotations

import dataclasses
import math
import os

import pytest

import train
from rlkit.agents import AGENTS
from rlkit.config import Bound, OneOf, constraints, flag_name, unchecked_numbers
from rlkit.errors import UserError

CARTPOLE = ["--agent", "dqn", "--env", "CartPole", "--total-steps", "2000", "--no-progress"]


@pytest.fixture
def nothing_built(monkeypatch):
    """Fail the test if training would build an env: flag checks come first."""
    import rlkit.jobs.agent

    def refuse(*args, **kwargs):
        raise AssertionError("an env was built before the flags were checked")

    monkeypatch.setattr(rlkit.jobs.agent, "make_env", refuse)


def refused(argv: list[str], tmp_path, match: str) -> None:
    """train.main refuses ``argv`` with a UserError matching ``match`` and writes nothing."""
    run = tmp_path / "run"
    with pytest.raises(UserError, match=match):
        train.main([*argv, "--run-dir", str(run)])
    assert not run.exists()


# ---------------------------------------------------------------------------------------------------- registry
CONFIGS = sorted({spec.agent_class.config_class for spec in AGENTS.values()}, key=lambda c: c.__name__)


@pytest.mark.parametrize("config_class", CONFIGS, ids=lambda c: c.__name__)
def test_every_number_field_of_every_agent_config_declares_its_range(config_class):
    assert unchecked_numbers(config_class) == []


@pytest.mark.parametrize("name", AGENTS)
def test_every_preset_is_valid(name):
    spec = AGENTS[name]
    for family in spec.families:
        spec.preset(family)  # __post_init__ checks it


def bad_values(bound: Bound | OneOf) -> list:
    if isinstance(bound, OneOf):
        return ["no-such-name"]
    values = [math.nan, math.inf, -math.inf]
    if math.isfinite(bound.low):
        values.append(bound.low if bound.low_open else bound.low - 1)
    if math.isfinite(bound.high):
        values.append(bound.high if bound.high_open else bound.high + 1)
    return values


def field_cases() -> list:
    cases = []
    for config_class in CONFIGS:
        for field, bound in constraints(config_class).items():
            for value in bad_values(bound):
                cases.append(pytest.param(config_class, field, value, id=f"{config_class.__name__}-{field}-{value}"))
    return cases


@pytest.mark.parametrize("config_class,field,value", field_cases())
def test_every_agent_config_refuses_non_finite_and_out_of_range_values(config_class, field, value):
    """nan, inf and values past either end of the declared range: one line naming the flag and the value."""
    hint = {f.name: f.type for f in dataclasses.fields(config_class)}[field]
    if "tuple" in str(hint):
        value = (value,)
    elif "int" in str(hint) and isinstance(value, float) and math.isfinite(value):
        value = int(value)
    with pytest.raises(UserError, match=f"^{flag_name(field)} .*must be .*got"):
        config_class(**{field: value})


def test_buffer_smaller_than_batch_is_refused():
    from rlkit.agents.sac import SACConfig

    with pytest.raises(UserError, match="--buffer-size 10 is smaller than --batch-size 64"):
        SACConfig(buffer_size=10, batch_size=64)


# ---------------------------------------------------------------------------------------------------- D11
@pytest.mark.parametrize("flags,match", [
    (["--learning-rate", "inf"], r"--learning-rate must be a finite number > 0, got inf"),
    (["--gamma", "nan"], r"--gamma must be a finite number in \(0, 1\], got nan"),
    (["--prioritized", "--priority-alpha", "nan"], "--priority-alpha must be a finite number"),
    (["--gamma", "1.5"], r"--gamma must be in \(0, 1\], got 1.5"),
    (["--learning-rate", "0"], "--learning-rate must be > 0, got 0"),
    (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    (["--gradient-steps", "0"], "--gradient-steps must be at least 1"),
    (["--tau", "2"], r"--tau must be in \(0, 1\], got 2"),
    (["--start-e", "5"], r"--start-e must be in \[0, 1\], got 5"),
    (["--exploration-fraction", "-1"], "--exploration-fraction must be in"),
    (["--buffer-size", "10"], "--buffer-size 10 is smaller than --batch-size 64"),
])
def test_d11_dqn_flags_are_validated(flags, match, tmp_path, nothing_built):
    refused([*CARTPOLE, *flags], tmp_path, match)


@pytest.mark.parametrize("argv,match", [
    (["--agent", "ppo", "--env", "CartPole", "--clip-coef", "-1"], "--clip-coef must be > 0, got -1"),
    (["--agent", "sac", "--env", "Pendulum", "--batch-size", "0"], "--batch-size must be at least 1, got 0"),
])
def test_d11_other_agents_flags_are_validated(argv, match, tmp_path, nothing_built):
    refused([*argv, "--total-steps", "2000", "--no-progress"], tmp_path, match)


# ---------------------------------------------------------------------------------------------------- D12
@pytest.mark.parametrize("flags,match", [
    (["--total-steps", "0"], "--total-steps must be at least 1, got 0"),
    (["--total-steps", "-100"], "--total-steps must be at least 1, got -100"),
    (["--num-envs", "0"], "--num-envs must be at least 1, got 0"),
    (["--eval-interval", "-1"], "--eval-interval must be at least 0, got -1"),
    (["--checkpoint-interval", "-5"], "--checkpoint-interval must be at least 0, got -5"),
    (["--eval-episodes", "-1"], "--eval-episodes must be at least 0, got -1"),
])
def test_d12_zero_and_negative_counts_are_refused_not_reinterpreted(flags, match, tmp_path, nothing_built):
    refused([*CARTPOLE, *flags], tmp_path, match)


# ---------------------------------------------------------------------------------------------------- D13
@pytest.mark.parametrize("argv,match", [
    ([*CARTPOLE, "--learning-rate", "nan"], "--learning-rate must be a finite number"),
    ([*CARTPOLE, "--batch-size", "-5"], "--batch-size must be at least 1, got -5"),
    ([*CARTPOLE, "--buffer-size", "0"], "--buffer-size must be at least 1, got 0"),
    ([*CARTPOLE, "--train-frequency", "0"], "--train-frequency must be at least 1, got 0"),
    ([*CARTPOLE, "--n-step", "0"], r"--n-step must be in \[1, 1000\], got 0"),
    ([*CARTPOLE, "--hidden", "-4"], "--hidden entries must be at least 1, got -4"),
    ([*CARTPOLE, "--bootstrapped", "--num-heads", "0"], "--num-heads must be at least 1, got 0"),
    ([*CARTPOLE, "--device", "tpu"], "unknown --device 'tpu': use auto, cpu, cuda or cuda:N"),
    ([*CARTPOLE, "--device", "cpu:1"], "--device cpu:1: there is one cpu device, cpu \\(or cpu:0\\)"),
    ([*CARTPOLE, "--seed", "-1"], "--seed must be at least 0, got -1"),
    (["--agent", "ppo", "--env", "CartPole", "--total-steps", "2000", "--num-minibatches", "0"],
     "--num-minibatches must be at least 1, got 0"),
    (["--agent", "a2c", "--env", "CartPole", "--total-steps", "2000", "--num-steps", "0"],
     "--num-steps must be at least 1, got 0"),
    (["--task", "mnist", "--net", "numpy-mlp", "--seed", "-1"], "--seed must be at least 0, got -1"),
    (["--task", "mnist", "--net", "numpy-mlp", "--max-steps", "-1"], "--max-steps must be at least 0, got -1"),
    (["--task", "mnist", "--net", "cnn", "--device", "gpu0"], "unknown --device 'gpu0'"),
])
def test_d13_invalid_flag_values_are_one_line_errors(argv, match, tmp_path, nothing_built):
    refused(argv, tmp_path, match)


def test_the_cpu_by_torch_s_own_name_is_a_device(tmp_path, capsys):
    """``--device cpu:0`` (how torch.device writes the CPU) was 'unknown --device'."""
    train.main([*CARTPOLE, "--device", "cpu:0", "--total-steps", "64", "--eval-episodes", "1", "--no-progress",
                "--run-dir", str(tmp_path / "run")])
    assert (tmp_path / "run" / "checkpoint.pt").exists()


def test_d13_run_dir_that_is_a_file_or_under_a_file(tmp_path, nothing_built):
    file = tmp_path / "file"
    file.write_text("not a folder")
    for run_dir, match in ((file, "is a file, not a folder"), (file / "run", f"is under {file}, which is a file")):
        with pytest.raises(UserError, match=match):
            train.main([*CARTPOLE, "--run-dir", str(run_dir)])
    assert file.read_text() == "not a folder"


def test_d13_read_only_run_dir(tmp_path, nothing_built, monkeypatch):
    """A read-only folder (or mount) is refused before the run starts. Root ignores permission bits, so there the
    test stands in for a read-only mount by making os.access say no, as it does on one."""
    import rlkit.runtime

    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            real = os.access
            monkeypatch.setattr(rlkit.runtime.os, "access",
                                lambda path, mode: False if os.fspath(path) == os.fspath(folder) else real(path, mode))
        with pytest.raises(UserError, match=f"cannot be written \\({folder} is read-only\\)"):
            train.main([*CARTPOLE, "--run-dir", str(folder / "run")])
    finally:
        folder.chmod(0o755)


# ---------------------------------------------------------------------------------------------------- D21
def test_d21_replay_larger_than_memory_is_refused_with_the_estimate(tmp_path):
    refused([*CARTPOLE, "--buffer-size", "1000000000000"], tmp_path,
            r"--buffer-size 1000000000000 needs about [\d.]+ TiB of memory but this machine has [\d.]+ \w+ available")


def test_d21_rollout_larger_than_memory_is_refused(tmp_path, monkeypatch):
    import rlkit.jobs.agent

    monkeypatch.setattr(rlkit.jobs.agent, "available_memory", lambda: 1 << 30)  # 1 GiB free
    refused(["--agent", "ppo", "--env", "CartPole", "--total-steps", "100000000", "--num-steps", "10000000",
             "--num-envs", "4", "--device", "cpu"], tmp_path,
            r"a rollout of --num-steps 10000000 x --num-envs 4 needs about [\d.]+ GiB of memory but this machine has "
            r"1.0 GiB available")


def test_d21_env_and_worker_counts_far_above_the_machine_are_refused(tmp_path, nothing_built):
    refused([*CARTPOLE, "--num-envs", "100000"], tmp_path, "--num-envs 100000 is far above what")
    refused(["--agent", "a3c", "--env", "CartPole", "--total-steps", "2000", "--num-workers", "1000"], tmp_path,
            "--num-workers 1000 is far above the")


def test_d21_a_replay_too_small_for_its_envs_is_refused(tmp_path):
    refused([*CARTPOLE, "--num-envs", "100", "--buffer-size", "200", "--batch-size", "32"], tmp_path,
            "--buffer-size 200 is too small for 100 envs")


def test_d21_total_steps_overshoot_is_said(tmp_path, capsys):
    train.main([*CARTPOLE, "--num-envs", "7", "--print-config"])
    assert ("warning: --total-steps 2000 is not a whole number of vector steps of 7 envs: the run takes 2002 steps"
            in capsys.readouterr().err)


# ---------------------------------------------------------------------------------------------------- item 7
def test_no_update_within_the_budget_is_an_error(tmp_path, nothing_built):
    refused([*CARTPOLE, "--learning-starts", "2000"], tmp_path,
            "--learning-starts 2000 is not below --total-steps 2000: no update would ever happen")
    refused(["--agent", "td3", "--env", "Pendulum", "--total-steps", "10000", "--learning-starts", "25000"], tmp_path,
            "--learning-starts 25000 is not below --total-steps 10000")


def test_a_rollout_longer_than_the_budget_and_a_late_evaluation_are_warned_of(tmp_path, capsys):
    train.main(["--agent", "ppo", "--env", "CartPole", "--total-steps", "100", "--eval-interval", "500",
                "--print-config"])
    err = capsys.readouterr().err
    assert "a rollout (--num-steps 32 x --num-envs 8 = 256 steps) is longer than --total-steps 100" in err
    assert "--eval-interval 500 is beyond the run's 100 steps: only the final evaluation will run" in err


def test_tiny_valid_runs_stay_valid(tmp_path, capsys):
    """The small values the smoke tests use on purpose pass, with no warning."""
    train.main([*CARTPOLE, "--buffer-size", "1000", "--batch-size", "32", "--learning-starts", "0", "--hidden", "16",
                "--exploration-fraction", "0", "--max-grad-norm", "0", "--print-config"])
    train.main(["--agent", "ppo", "--env", "CartPole", "--total-steps", "64", "--num-steps", "8", "--num-envs", "8",
                "--num-minibatches", "1", "--ent-coef", "0", "--print-config"])
    assert "warning" not in capsys.readouterr().err


def _read_only_rules():
    from rlkit.config import read_only_with

    for name, spec in AGENTS.items():
        for field, (switch, readers) in read_only_with(spec.agent_class.config_class).items():
            yield pytest.param(name, field, switch, readers, id=f"{name}-{field}")


@pytest.mark.parametrize("agent, field, switch, readers", _read_only_rules())
def test_every_flag_read_only_with_another_is_refused_without_it(agent, field, switch, readers):
    """--priority-alpha without --prioritized (and every such pair an agent declares) was accepted and ignored."""
    import argparse

    from rlkit.config import Above, refuse_unread_flags, read_only_with

    spec = AGENTS[agent]
    config = spec.agent_class.config_class(**spec.variant)
    fields = {f.name for f in dataclasses.fields(config)}
    assert field in fields and switch in fields  # a rule names real fields
    args = argparse.Namespace(**{field: getattr(config, field)})
    table = read_only_with(type(config))
    reader = readers.example if isinstance(readers, Above) else readers[0]
    assert reader in readers
    refuse_unread_flags(args, table, lambda name: reader if name == switch else getattr(config, name))
    off = next(v for v in (False, "none", "constant", "sgd", "adam", 0.0) if v not in readers and
               isinstance(v, type(getattr(config, switch))))
    with pytest.raises(UserError, match=f"--{field.replace('_', '-')} is read .*--{switch.replace('_', '-')}"):
        refuse_unread_flags(args, table, lambda name: off if name == switch else getattr(config, name))


@pytest.mark.parametrize("argv, message", [
    (["--agent", "dqn", "--env", "CartPole", "--priority-alpha", "0.5"],
     "--priority-alpha is read only with --prioritized, which this run does not use: drop --priority-alpha "
     r"\(or add --prioritized\)"),
    (["--agent", "ppo", "--env", "CartPole", "--recurrent-hidden", "32"],
     "--recurrent-hidden is read by --recurrent lstm and gru; this run's --recurrent is none"),
    (["--agent", "q-learning", "--env", "FrozenLake", "--omega", "0.7"],
     "--omega is read by --step-size polynomial; this run's --step-size is constant"),
    (["--agent", "ddpg", "--env", "Pendulum", "--target-noise-clip", "0.3"],
     r"--target-noise-clip is read only when --target-policy-noise is above 0; this run's --target-policy-noise is "
     r"0.0: drop --target-noise-clip \(or add --target-policy-noise 0.2\)"),
    (["--agent", "td3", "--env", "Pendulum", "--target-policy-noise", "0", "--target-noise-clip", "0.3"],
     "--target-noise-clip is read only when --target-policy-noise is above 0"),
])
def test_a_flag_the_run_would_ignore_is_one_line(argv, message, tmp_path, nothing_built):
    refused([*argv, "--total-steps", "2000", "--no-progress"], tmp_path, message)


@pytest.mark.parametrize("argv", [
    ["--agent", "rainbow", "--env", "CartPole", "--v-min", "-5", "--noisy-std", "0.3", "--priority-alpha", "0.5"],
    ["--agent", "c51", "--env", "CartPole", "--num-atoms", "21"],
    ["--agent", "ppo", "--env", "CartPole", "--recurrent", "gru", "--recurrent-hidden", "32"],
    ["--agent", "td3", "--env", "Pendulum", "--target-noise-clip", "0.3"],
    ["--agent", "ddpg", "--env", "Pendulum", "--target-policy-noise", "0.1", "--target-noise-clip", "0.3"],
])
def test_flags_that_the_agent_s_variant_reads_are_accepted(argv, capsys):
    train.main([*argv, "--print-config"])
