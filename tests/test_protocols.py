"""Protocol presets (``--preset``, rlkit/hyperparams/presets/): what they set, where --print-config says it came
from, and what they refuse."""

from __future__ import annotations

import json

import pytest

import train
from rlkit.config import read_config_file
from rlkit.errors import UserError
from rlkit.hyperparams import PRESETS_DIR, preset_names


def printed(capsys, *argv: str) -> dict:
    train.main([*argv, "--print-config"])
    return json.loads(capsys.readouterr().out)


def preset_agents() -> list[tuple[str, str]]:
    return [(name, agent) for name in preset_names()
            for agent, value in read_config_file(PRESETS_DIR / f"{name}.yml").items() if isinstance(value, dict)]


@pytest.mark.parametrize("name, agent", preset_agents())
def test_every_preset_section_builds_a_valid_run(capsys, name, agent):
    out = printed(capsys, "--agent", agent, "--env", "Breakout", "--preset", name)
    assert out["settings"]["preset"] == name
    assert f"--preset {name}:{agent}" in out["sources"]


def test_atari100k_gives_der_to_rainbow(capsys):
    out = printed(capsys, "--agent", "rainbow", "--env", "Pong", "--preset", "atari100k")
    config, settings = out["config"], out["settings"]
    assert (settings["total_steps"], settings["eval_episodes"], settings["eval_interval"]) == (100_000, 100, 0)
    assert not settings["sticky_actions"]
    assert (config["learning_starts"], config["train_frequency"], config["n_step"], config["target_update_interval"],
            config["noisy_std"], config["adam_eps"], config["eval_epsilon"]) == (1600, 1, 10, 2000, 0.1, 1.5e-4, 0.001)
    assert config["distributional"] and config["noisy"] and config["prioritized"] and config["start_e"] == 0.0
    assert "eval_episodes" in out["sources"]["--preset atari100k"]


def test_atari100k_gives_drq_eps_to_dueling_dqn(capsys):
    config = printed(capsys, "--agent", "dueling-dqn", "--env", "Pong", "--preset", "atari100k")["config"]
    assert (config["augment"], config["augment_pad"], config["target_update_interval"]) == ("shift", 4, 1)
    assert (config["end_e"], config["exploration_fraction"], config["n_step"]) == (0.01, 0.05, 10)
    assert config["double"] and config["dueling"] and not config["prioritized"] and not config["distributional"]


def test_flags_override_the_preset_and_short_runs_fit_its_warmup(capsys):
    out = printed(capsys, "--agent", "rainbow", "--env", "Pong", "--preset", "atari100k", "--eval-episodes", "5",
                  "--n-step", "3", "--total-steps", "2000")
    assert out["settings"]["eval_episodes"] == 5 and out["config"]["n_step"] == 3
    assert out["config"]["learning_starts"] == 100  # 5% of 2000: the preset's 1600 is for 100k steps


@pytest.mark.parametrize("argv, message", [
    (["--agent", "ppo", "--env", "Pong"], "has values for --agent rainbow, dueling-dqn, not ppo"),
    (["--agent", "rainbow", "--env", "CartPole"], "is for atari envs"),
])
def test_preset_refuses_what_it_has_no_values_for(argv, message):
    with pytest.raises(UserError, match=message):
        train.main([*argv, "--preset", "atari100k", "--print-config"])


def test_unknown_preset_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--agent", "rainbow", "--env", "Pong", "--preset", "atari1m", "--print-config"])
    assert exit_info.value.code == 2 and "atari100k" in capsys.readouterr().err
