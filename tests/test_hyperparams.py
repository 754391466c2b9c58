"""Hyperparameter files: the shipped per-env values and ``--config FILE``, layered family preset < env file <
``--config`` < flags, as ``--print-config`` reports them."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import gymnasium as gym
import pytest
import yaml

import train
from rlkit.agents import AGENTS
from rlkit.config import config_to_dict
from rlkit.envs import resolve_env
from rlkit.errors import UserError
from rlkit.hyperparams import HYPERPARAMS_DIR, RUN_KEYS, shipped_agents
from rlkit.jobs import JOBS

ROOT = Path(__file__).resolve().parent.parent
ZOO = "https://github.com/DLR-RM/rl-baselines3-zoo/blob/"


def print_config(capsys, *argv: str) -> dict:
    """--print-config's JSON, with its "sources" (layer -> names) turned into name -> layer."""
    train.main([*argv, "--print-config"])
    out = json.loads(capsys.readouterr().out)
    out["sources"] = {name: label for label, names in out["sources"].items() for name in names}
    return out


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------------------------- layering
def test_a_file_overrides_the_preset_and_a_flag_overrides_the_file(tmp_path, capsys):
    """dqn on CartPole: the shipped CartPole-v1 entry, then the file's flat values and its CartPole section (named
    by short name), then a flag; each value reports the layer it came from."""
    config = write(tmp_path / "mine.yml", "learning_rate: 1e-3\nhidden: [32, 32]\n"
                                          "CartPole:\n  batch_size: 16\n  total_steps: 5000\n  learning_rate: 2e-3\n"
                                          "Acrobot-v1:\n  batch_size: 99\n")
    out = print_config(capsys, "--agent", "dqn", "--env", "CartPole", "--config", str(config), "--batch-size", "8")
    c, sources = out["config"], out["sources"]
    assert (c["learning_rate"], c["hidden"], c["batch_size"]) == (2e-3, [32, 32], 8)
    assert out["settings"]["total_steps"] == 5000
    assert c["train_frequency"] == 256 and sources["train_frequency"] == "hyperparams/dqn.yml:CartPole-v1"
    assert c["eval_epsilon"] == 0.0 and sources["eval_epsilon"] == "preset:other"  # no file sets it
    assert sources["hidden"] == f"--config {config}"
    assert sources["learning_rate"] == sources["total_steps"] == f"--config {config}:CartPole"
    assert sources["batch_size"] == "flag"
    assert sources["num_envs"] == "hyperparams/dqn.yml:CartPole-v1"


def test_later_config_files_override_earlier_ones_and_toml_reads_like_yaml(tmp_path, capsys):
    first = write(tmp_path / "a.yml", "gamma: 0.9\nbatch_size: 16\n")
    second = write(tmp_path / "b.toml", 'gamma = 0.95\n\n["CartPole-v1"]\nnum_envs = 2\nhidden = [8]\n')
    out = print_config(capsys, "--agent", "dqn", "--env", "CartPole", "--config", str(first), "--config", str(second))
    assert (out["config"]["gamma"], out["config"]["batch_size"], out["config"]["hidden"]) == (0.95, 16, [8])
    assert out["settings"]["num_envs"] == 2
    assert out["sources"]["gamma"] == f"--config {second}" and out["sources"]["batch_size"] == f"--config {first}"
    assert out["sources"]["num_envs"] == f"--config {second}:CartPole-v1"


def test_help_shows_the_values_the_files_give(tmp_path, capsys):
    config = write(tmp_path / "c.yml", "learning_rate: 0.000123\n")
    with pytest.raises(SystemExit) as done:
        train.main(["--agent", "dqn", "--env", "Acrobot", "--config", str(config), "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert done.value.code == 0
    assert "Adam learning rate. (default: 0.000123)" in text and "Transitions per update. (default: 128)" in text


def test_the_shipped_file_is_picked_for_its_env_and_not_for_another(capsys):
    acrobot = print_config(capsys, "--agent", "dqn", "--env", "Acrobot")
    assert (acrobot["config"]["target_update_interval"], acrobot["config"]["batch_size"]) == (250, 128)
    assert acrobot["sources"]["learning_rate"] == "hyperparams/dqn.yml:Acrobot-v1"
    mountain_car = print_config(capsys, "--agent", "dqn", "--env", "MountainCar-v0")
    assert mountain_car["config"]["target_update_interval"] == 600
    assert mountain_car["settings"]["total_steps"] == 120_000
    # td3 ships no MountainCarContinuous entry (the zoo's uses Ornstein-Uhlenbeck noise): the family preset runs
    plain = print_config(capsys, "--agent", "td3", "--env", "MountainCarContinuous")
    family = config_to_dict(AGENTS["td3"].preset("other"))
    assert plain["config"] == family and set(plain["sources"].values()) == {"preset:other"}


def test_the_python_api_gets_the_same_values_as_the_command_line(capsys):
    """AgentJob.preset (what rlkit.make builds on) includes the env file's layer."""
    job = JOBS["agent"]
    config = job.preset({"agent": "ppo", "env": "LunarLander"})
    assert config == job.hyperparams({"agent": "ppo", "env": "LunarLander-v3"}).config
    assert (config.num_steps, config.gamma, config.ent_coef) == (1024, 0.999, 0.01)
    assert config_to_dict(config) == print_config(capsys, "--agent", "ppo", "--env", "LunarLander")["config"]
    assert job.hyperparams({"agent": "ppo", "env": "LunarLander"}).run == {"total_steps": 1_000_000, "num_envs": 16}


def test_a_dqn_variant_reads_dqns_file_and_keeps_what_its_name_means(capsys):
    out = print_config(capsys, "--agent", "bootstrapped-dqn", "--env", "Acrobot")
    assert out["config"]["batch_size"] == 128 and out["sources"]["batch_size"] == "hyperparams/dqn.yml:Acrobot-v1"
    assert (out["config"]["start_e"], out["config"]["bootstrapped"]) == (0.0, True)  # the file's 1.0 is undone
    assert out["sources"]["start_e"] == "--agent bootstrapped-dqn"


def test_config_with_resume_is_refused(tmp_path):
    run = tmp_path / "run"
    train.main(["--agent", "dqn", "--env", "CartPole", "--total-steps", "64", "--learning-starts", "32",
                "--hidden", "8", "--eval-episodes", "0", "--no-progress", "--run-dir", str(run)])
    config = write(tmp_path / "c.yml", "learning_rate: 1e-3\n")
    with pytest.raises(UserError, match="--config cannot be used with --resume: a resumed run keeps its saved config"):
        train.main(["--resume", str(run), "--config", str(config), "--total-steps", "128"])


def test_config_is_refused_for_a_supervised_run(tmp_path):
    config = write(tmp_path / "c.yml", "learning_rate: 1e-3\n")
    with pytest.raises(UserError, match="--config is for agent runs"):
        train.main(["--task", "mnist", "--net", "cnn", "--config", str(config), "--print-config"])


# ---------------------------------------------------------------------------------------------------- bad files
@pytest.mark.parametrize("text, name, match", [
    ("learning_rat: 1e-3\n", "c.yml", r"c\.yml: unknown key 'learning_rat': did you mean learning_rate"),
    ("CartPole-v1:\n  bach_size: 3\n", "c.yml",
     r"c\.yml \[CartPole-v1\]: unknown key 'bach_size': did you mean batch_size"),
    ("Cartpol-v9:\n  batch_size: 3\n", "c.yml", r"section 'Cartpol-v9' names no env"),
    ("batch_size: lots\n", "c.yml", r"c\.yml: batch_size must be a whole number, got 'lots'"),
    ("batch_size: 2.5\n", "c.yml", r"batch_size must be a whole number, got 2.5"),
    ("learning_rate: -1.0\n", "c.yml", r"c\.yml: --learning-rate must be > 0, got -1.0"),
    ("total_steps: 0\n", "c.yml", r"c\.yml: total_steps must be at least 1"),
    ("[1, 2]\n", "c.yml", r"c\.yml must hold a mapping"),
    ("batch_size: [1,\n", "c.yml", r"c\.yml is not valid YAML"),
    ("batch_size = \n", "c.toml", r"c\.toml is not valid TOML"),
    ("batch_size: 3\n", "c.json", r"c\.json: a config file is YAML \(\.yml, \.yaml\) or TOML"),
])
def test_a_bad_file_is_a_one_line_error_naming_the_file(tmp_path, text, name, match):
    config = write(tmp_path / name, text)
    with pytest.raises(UserError, match=match):
        train.main(["--agent", "dqn", "--env", "CartPole", "--config", str(config), "--print-config"])


def test_a_missing_file_is_an_error(tmp_path):
    with pytest.raises(UserError, match="cannot read config file .*nothere.yml"):
        train.main(["--agent", "dqn", "--env", "CartPole", "--config", str(tmp_path / "nothere.yml")])


def test_the_command_line_prints_one_line_and_exits_2(tmp_path):
    config = write(tmp_path / "c.yml", "learning_rat: 1e-3\n")
    done = subprocess.run([sys.executable, str(ROOT / "train.py"), "--agent", "dqn", "--env", "CartPole", "--config",
                           str(config), "--print-config"], capture_output=True, text=True, cwd=tmp_path,
                          env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().count("\n") == 0 and "unknown key 'learning_rat'" in done.stderr


# ---------------------------------------------------------------------------------------------------- shipped
def shipped_entries() -> list:
    """(agent name, env id) for every entry of every shipped file and every agent name that reads it."""
    cases = []
    for name, spec in AGENTS.items():
        path = HYPERPARAMS_DIR / f"{spec.hyperparams_file}.yml"
        if path.is_file():
            for env_id in yaml.safe_load(path.read_text()):
                cases.append(pytest.param(name, env_id, id=f"{name}-{env_id}"))
    return cases


@lru_cache(maxsize=None)
def action_space(env_id: str) -> gym.Space:
    env = gym.make(env_id)
    env.close()
    return env.action_space


def test_every_shipped_file_is_an_agents_and_is_tested():
    assert set(shipped_agents()) == {"dqn", "ppo", "a2c", "trpo", "sac", "td3", "ddpg"}
    assert all(AGENTS[name].hyperparams_file == name for name in shipped_agents())
    assert len(shipped_entries()) > 60


@pytest.mark.parametrize("name, env_id", shipped_entries())
def test_every_shipped_entry_is_real_fields_and_builds_a_valid_config(name, env_id):
    """Each key is a field of the agent's config or a run setting; the entry, applied, gives exactly its values
    (nothing silently dropped) and a config that passes validation; it names a registered env whose actions the
    agent takes, and cites the zoo file and commit it comes from."""
    spec = AGENTS[name]
    entry = yaml.safe_load((HYPERPARAMS_DIR / f"{spec.hyperparams_file}.yml").read_text())[env_id]
    fields = {f.name for f in dataclasses.fields(spec.agent_class.config_class)}
    assert set(entry) - {"source"} <= fields | set(RUN_KEYS)
    assert entry["source"].startswith(ZOO) and f"/hyperparams/{spec.hyperparams_file}.yml" in entry["source"]
    assert set(RUN_KEYS) <= set(entry)
    assert resolve_env(env_id).env_id == env_id
    assert isinstance(action_space(env_id), spec.agent_class.action_spaces)

    chosen = JOBS["agent"].hyperparams({"agent": name, "env": env_id})
    config = config_to_dict(chosen.config)
    for key, value in entry.items():
        if key in RUN_KEYS:
            assert chosen.run[key] == value
        elif key != "source" and key not in spec.variant:
            assert config[key] == value, key
            assert chosen.sources[key] == f"hyperparams/{spec.hyperparams_file}.yml:{env_id}"
    for key, value in spec.variant.items():
        assert config[key] == value
