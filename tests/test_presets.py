"""Presets are data: every registered agent has a preset for every env family its action spaces allow, each builds
its config, and the published values are the ones that run."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import gymnasium as gym
import pytest

from rlkit.agents import AGENTS, RunDefaults, get_agent_spec
from rlkit.config import config_to_dict
from rlkit.envs import FAMILIES
from rlkit.errors import UserError

SNAPSHOT = Path(__file__).parent / "data" / "presets_v1.json"
"""agent -> family -> {config, num_envs, total_steps} as the code before the preset tables resolved them (commit
601da95), for the families whose action space the agent takes; changed on purpose since: the classic-control
("other") rows of the DQN family (issue 12: no longer CartPole's tuned values, which CartPole now gets from
rlkit/hyperparams/dqn.yml)."""

# Atari games have discrete actions, MuJoCo bodies continuous ones; "other" holds both kinds.
FAMILY_ACTIONS = {"atari": (gym.spaces.Discrete,), "mujoco": (gym.spaces.Box,),
                  "other": (gym.spaces.Discrete, gym.spaces.Box)}


def allowed_families(name: str) -> set[str]:
    agent_class = AGENTS[name].agent_class
    return {family for family, kinds in FAMILY_ACTIONS.items()
            if set(kinds) & set(agent_class.action_spaces) and family in agent_class.env_families}


@pytest.mark.parametrize("name", AGENTS)
def test_every_agent_has_a_preset_for_every_family_it_can_act_in(name):
    spec = AGENTS[name]
    assert set(spec.families) <= set(FAMILIES)
    assert allowed_families(name) <= set(spec.families)


@pytest.mark.parametrize("name", AGENTS)
def test_every_preset_builds_its_config_and_run_defaults(name):
    spec = AGENTS[name]
    for family in spec.families:
        config = spec.preset(family)
        assert isinstance(config, spec.agent_class.config_class)
        names = {f.name for f in dataclasses.fields(config)}
        assert set(spec.presets[family]) - {"num_envs", "total_steps"} <= names  # no key is silently dropped
        defaults = spec.run_defaults(family)
        assert isinstance(defaults, RunDefaults) and defaults.num_envs >= 1 and defaults.total_steps >= 1
        for key, value in spec.variant.items():
            assert getattr(config, key) == value


@pytest.mark.parametrize("name", AGENTS)
def test_a_family_without_a_preset_is_refused_naming_the_supported_ones(name):
    spec = AGENTS[name]
    missing = [family for family in FAMILIES if family not in spec.families]
    for family in missing:
        with pytest.raises(UserError, match=", ".join(spec.families)):
            spec.preset(family)
        with pytest.raises(UserError, match=f"no preset for {family}"):
            spec.run_defaults(family)


def test_published_values_by_hand():
    """The values the issue found --help hiding: TD3 on MuJoCo and DQN on classic control."""
    td3 = get_agent_spec("td3").preset("mujoco")
    assert (td3.twin_critics, td3.target_policy_noise, td3.policy_frequency) == (True, 0.2, 2)
    dqn = get_agent_spec("dqn").preset("other")  # rl-baselines3-zoo's Acrobot / LunarLander values
    assert (dqn.batch_size, dqn.learning_rate, dqn.buffer_size, dqn.target_update_interval) == (
        128, 6.3e-4, 50_000, 250)
    assert get_agent_spec("dqn").preset("atari").batch_size == 32
    assert get_agent_spec("dqn").run_defaults("atari") == RunDefaults(num_envs=1, total_steps=10_000_000)
    assert get_agent_spec("a2c").run_defaults("atari") == RunDefaults(num_envs=16, total_steps=10_000_000)
    assert get_agent_spec("ppo").run_defaults("mujoco") == RunDefaults(num_envs=1, total_steps=1_000_000)
    assert get_agent_spec("trpo").run_defaults("other") == RunDefaults(num_envs=2, total_steps=100_000)



@pytest.mark.parametrize("name", list(json.loads(SNAPSHOT.read_text())))
def test_presets_keep_the_values_they_had(name):
    """Each family's preset resolves to the values it had before the tables (the fields the config still has)."""
    spec, recorded = AGENTS[name], json.loads(SNAPSHOT.read_text())[name]
    for family, before in recorded.items():
        config = config_to_dict(spec.preset(family))
        common = config.keys() & before["config"].keys()
        assert {k: config[k] for k in common} == {k: before["config"][k] for k in common}, family
        defaults = spec.run_defaults(family)
        assert (defaults.num_envs, defaults.total_steps) == (before["num_envs"], before["total_steps"]), family
