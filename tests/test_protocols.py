"""Protocol presets (``--preset``, rlkit/hyperparams/presets/): what they set, where --print-config says it came
from, and what they refuse."""

from __future__ import annotations

import json

import pytest
import torch

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


def test_course_continuous_gives_the_assignments_network(capsys):
    """Two tanh layers of 64, a state-independent log std, and a value net of the same shape of its own."""
    import dataclasses

    from rlkit.agents import PPO, PPOConfig
    from rlkit.envs import make_env
    from rlkit.nets.policies import GaussianHead

    out = printed(capsys, "--agent", "ppo", "--env", "LunarLanderContinuous", "--preset", "course-continuous")
    config = out["config"]
    assert (config["hidden"], config["activation"], out["settings"]["total_steps"]) == ([64, 64], "tanh", 500_000)
    env = make_env("LunarLanderContinuous", 1)
    fields = {f.name for f in dataclasses.fields(PPOConfig)}
    agent = PPO(PPOConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items() if k in fields}),
                env.single_observation_space, env.single_action_space)
    net = agent.net
    assert isinstance(net.policy_head, GaussianHead) and isinstance(net.policy_head.log_std, torch.nn.Parameter)
    assert net.actor_torso is not net.critic_torso
    for torso in (net.actor_torso, net.critic_torso):
        layers = [type(m).__name__ for m in torso.layers if not isinstance(m, torch.nn.Flatten)]
        assert layers == ["Linear", "Tanh", "Linear", "Tanh"]
        assert [m.out_features for m in torso.layers if isinstance(m, torch.nn.Linear)] == [64, 64]
