"""Agents, and the names ``train.py --agent`` knows them by."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rlkit.agents.base import Agent
from rlkit.agents.dqn import DQN, VARIANTS as DQN_VARIANTS, DQNConfig
from rlkit.errors import UserError


@dataclass(frozen=True)
class AgentSpec:
    """How a command-line agent name maps to a class and its configuration."""

    name: str
    agent_class: type[Agent]
    preset: Callable[[str], Any]
    """env family (``atari``, ``mujoco``, ``other``) -> config with the published defaults for it."""
    help: str


def _dqn_spec(name: str, help: str) -> AgentSpec:
    return AgentSpec(name, DQN, lambda family: dataclasses.replace(DQNConfig.preset(family), **DQN_VARIANTS[name]), help)


AGENTS: dict[str, AgentSpec] = {
    spec.name: spec
    for spec in (
        _dqn_spec("dqn", "Deep Q-network (Mnih et al. 2015)"),
        _dqn_spec("double-dqn", "DQN with double Q-learning targets (van Hasselt et al. 2016)"),
        _dqn_spec("dueling-dqn", "Double DQN with a dueling head (Wang et al. 2016)"),
        _dqn_spec("bootstrapped-dqn", "Bootstrapped DQN, K heads with masks (Osband et al. 2016)"),
    )
}


def get_agent_spec(name: str) -> AgentSpec:
    """The spec for an agent name; an unknown name raises a :class:`UserError` with the closest names."""
    if name in AGENTS:
        return AGENTS[name]
    close = difflib.get_close_matches(name, AGENTS, n=3, cutoff=0.4)
    hint = f"did you mean {', '.join(close)}?" if close else f"choose one of {', '.join(AGENTS)}"
    raise UserError(f"unknown agent {name!r}: {hint}")


__all__ = ["Agent", "AgentSpec", "AGENTS", "DQN", "DQNConfig", "get_agent_spec"]
