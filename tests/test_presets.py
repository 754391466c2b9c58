"""Presets as data: every agent has a preset (config values, sub-environments, steps) for every env family it
supports, a family it does not support is refused by name, and moving the presets into tables changed no value."""

from __future__ import annotations

import json
import typing
from pathlib import Path

import pytest

from rlkit.agents import AGENTS
from rlkit.config import config_to_dict
from rlkit.errors import UserError

SNAPSHOT = Path(__file__).parent / "data" / "presets_v1.json"
"""agent -> family -> {config, num_envs, total_steps} as the code before the preset tables resolved them (commit
601da95: ``spec.preset(family)``, ``spec.default_num_envs(family)``, train.py's ``DEFAULT_TOTAL_STEPS``), for the
families whose action space the agent takes (atari: Discrete, mujoco: Box, other: both)."""


def families() -> tuple[str, ...]:
    from rlkit.envs import Family  # one Literal type for the env families

    return typing.get_args(Family)


@pytest.mark.parametrize("name", list(AGENTS))
def test_every_agent_has_a_preset_for_every_family_it_supports(name):
    spec = AGENTS[name]
    assert spec.families and set(spec.families) <= set(families()), spec.families
    for family in spec.families:
        assert isinstance(spec.preset(family), spec.agent_class.config_class)
        defaults = spec.run_defaults(family)
        assert isinstance(defaults.num_envs, int) and isinstance(defaults.total_steps, int)
    for family in set(families()) - set(spec.families):  # never a silent fallback to another family's values
        with pytest.raises(UserError, match=family) as refused:
            spec.preset(family)
        assert all(supported in str(refused.value) for supported in spec.families), str(refused.value)


@pytest.mark.parametrize("name", list(json.loads(SNAPSHOT.read_text())))
def test_presets_keep_the_values_they_had(name):
    """Each family's preset resolves to the values it had before the tables (fields the config still has; agents
    registered since have no record)."""
    spec, recorded = AGENTS[name], json.loads(SNAPSHOT.read_text())[name]
    supported = getattr(spec, "families", None) or tuple(recorded)
    compared = 0
    for family, before in recorded.items():
        if family not in supported:
            continue
        config = config_to_dict(spec.preset(family))
        common = config.keys() & before["config"].keys()
        assert {k: config[k] for k in common} == {k: before["config"][k] for k in common}, family
        if hasattr(spec, "run_defaults"):
            defaults = spec.run_defaults(family)
            num_envs, total_steps = defaults.num_envs, defaults.total_steps
        else:
            import train

            num_envs, total_steps = spec.default_num_envs(family), train.DEFAULT_TOTAL_STEPS[family]
        assert (num_envs, total_steps) == (before["num_envs"], before["total_steps"]), family
        compared += 1
    assert compared >= 1  # an agent that dropped every family it had would pass vacuously
