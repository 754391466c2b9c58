"""Behaviour of rlkit.config: field docstrings, dataclass -> command-line flags, and config <-> plain data."""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass

import pytest

from rlkit.agents import AGENTS
from rlkit.agents.dqn import DQNConfig
from rlkit.config import add_config_flags, apply_flags, config_from_dict, config_to_dict, field_docs


@dataclass
class Base:
    """A class docstring is not a field's."""

    alpha: float = 0.5
    """First line,
    second line."""
    beta: int = 3


@dataclass
class Child(Base):
    gamma: tuple[int, ...] = (1, 2)
    """Widths."""


@pytest.fixture
def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="train")
    add_config_flags(parser, DQNConfig, "DQN")
    return parser


def test_field_docs_reads_the_strings_under_fields():
    """field_docs maps each field to the string literal below it, whitespace collapsed."""
    docs = field_docs(DQNConfig)
    assert docs["learning_rate"] == "Adam learning rate."
    assert docs["double"] == "Double DQN target: the online network picks the next action, the target network values it."
    assert set(docs) == {f.name for f in dataclasses.fields(DQNConfig)}  # every DQN field is documented


def test_field_docs_inheritance_and_undocumented_fields():
    """Base-class fields are included, multi-line strings are joined, undocumented fields are absent."""
    assert field_docs(Child) == {"alpha": "First line, second line.", "gamma": "Widths."}


def test_flags_parse_to_typed_values(parser):
    """--learning-rate takes a float, --double/--no-double a bool, --hidden a list of ints."""
    args = parser.parse_args(["--learning-rate", "0.01", "--no-double", "--hidden", "64", "64", "--batch-size", "7"])
    assert args.learning_rate == 0.01 and args.double is False and args.hidden == [64, 64] and args.batch_size == 7
    assert parser.parse_args(["--double"]).double is True


def test_unset_flags_are_none(parser):
    """Flags the user did not give parse to None (so the preset keeps its value)."""
    args = parser.parse_args([])
    assert all(getattr(args, f.name) is None for f in dataclasses.fields(DQNConfig))


def test_help_shows_docstring_and_default(parser):
    """--help shows each field's docstring and its class default."""
    text = " ".join(parser.format_help().split())
    assert "--learning-rate FLOAT Adam learning rate. (default: 0.0001)" in text
    assert "--double, --no-double Double DQN target:" in text
    assert "--hidden N [N ...] MLP encoder widths" in text


def test_apply_flags_changes_only_set_flags(parser):
    """apply_flags copies the config with exactly the flags that were set (lists become tuples, False counts)."""
    preset = dataclasses.replace(AGENTS["dqn"].preset("other"), double=True)
    args = parser.parse_args(["--learning-rate", "0.01", "--no-double", "--hidden", "64", "64"])
    config = apply_flags(preset, args)
    assert config == dataclasses.replace(preset, learning_rate=0.01, double=False, hidden=(64, 64))
    assert preset.learning_rate == 6.3e-4 and preset.double  # the preset itself is untouched
    assert apply_flags(preset, parser.parse_args([])) == preset


def test_config_dict_round_trip():
    """config_to_dict gives JSON-able plain data (tuples as lists) and config_from_dict rebuilds an equal config."""
    config = dataclasses.replace(DQNConfig(), hidden=(64, 32), double=True, learning_rate=3e-4)
    data = config_to_dict(config)
    assert data["hidden"] == [64, 32] and data["learning_rate"] == 3e-4
    rebuilt = config_from_dict(DQNConfig, json.loads(json.dumps(data)))
    assert rebuilt == config and rebuilt.hidden == (64, 32) and isinstance(rebuilt.hidden, tuple)


def test_config_from_partial_dict_keeps_defaults():
    """Missing keys take the class defaults."""
    assert config_from_dict(DQNConfig, {"gamma": 0.5}) == dataclasses.replace(DQNConfig(), gamma=0.5)


def test_config_from_dict_rejects_unknown_keys():
    """Unknown keys raise a ValueError that names them."""
    with pytest.raises(ValueError, match=r"unknown DQNConfig fields \['lr', 'nstep'\]"):
        config_from_dict(DQNConfig, {"gamma": 0.5, "lr": 1e-3, "nstep": 3})
