"""Agents, and the names ``train.py --agent`` knows them by."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from rlkit.agents import a2c, a3c, ppo, reinforce, trpo
from rlkit.agents.a2c import A2C, A2CConfig
from rlkit.agents.a3c import A3C, A3CConfig
from rlkit.agents.base import Agent
from rlkit.agents.ddpg import DDPG, VARIANTS as DDPG_VARIANTS, DDPGConfig
from rlkit.agents.dqn import DQN, VARIANTS as DQN_VARIANTS, DQNConfig
from rlkit.agents.policy_gradient import PolicyAgent
from rlkit.agents.ppo import PPO, PPOConfig
from rlkit.agents.reinforce import REINFORCE, REINFORCEConfig
from rlkit.agents.sac import SAC, SACConfig
from rlkit.agents.trpo import TRPO, TRPOConfig
from rlkit.errors import UserError


@dataclass(frozen=True)
class AgentSpec:
    """How a command-line agent name maps to a class and its configuration."""

    name: str
    agent_class: type[Agent]
    preset: Callable[[str], Any]
    """env family (``atari``, ``mujoco``, ``other``) -> config with the published defaults for it."""
    help: str
    num_envs: dict[str, int] | None = None
    """env family -> sub-environments by default (1 where not given)."""

    def default_num_envs(self, family: str) -> int:
        return (self.num_envs or {}).get(family, 1)

    def run_defaults(self, family: str) -> "RunDefaults":
        return RunDefaults(self.default_num_envs(family),
                           {"atari": 10_000_000, "mujoco": 1_000_000, "other": 100_000}[family])


class RunDefaults(NamedTuple):
    num_envs: int
    total_steps: int


def _dqn_spec(name: str, help: str) -> AgentSpec:
    return AgentSpec(name, DQN, lambda family: dataclasses.replace(DQNConfig.preset(family), **DQN_VARIANTS[name]), help)


def _ddpg_spec(name: str, help: str) -> AgentSpec:
    return AgentSpec(name, DDPG, lambda family: dataclasses.replace(DDPGConfig.preset(family), **DDPG_VARIANTS[name]),
                     help)


AGENTS: dict[str, AgentSpec] = {
    spec.name: spec
    for spec in (
        _dqn_spec("dqn", "Deep Q-network (Mnih et al. 2015)"),
        _dqn_spec("double-dqn", "DQN with double Q-learning targets (van Hasselt et al. 2016)"),
        _dqn_spec("dueling-dqn", "Double DQN with a dueling head (Wang et al. 2016)"),
        _dqn_spec("bootstrapped-dqn", "Bootstrapped DQN, K heads with masks (Osband et al. 2016)"),
        AgentSpec("reinforce", REINFORCE, REINFORCEConfig.preset,
                  "Monte Carlo policy gradient with reward-to-go and a learned baseline (Williams 1992)",
                  reinforce.NUM_ENVS),
        AgentSpec("a2c", A2C, A2CConfig.preset, "synchronous advantage actor-critic with GAE (Mnih et al. 2016)",
                  a2c.NUM_ENVS),
        AgentSpec("ppo", PPO, PPOConfig.preset, "proximal policy optimization, clipped (Schulman et al. 2017)",
                  ppo.NUM_ENVS),
        AgentSpec("trpo", TRPO, TRPOConfig.preset, "trust region policy optimization (Schulman et al. 2015)",
                  trpo.NUM_ENVS),
        AgentSpec("a3c", A3C, A3CConfig.preset,
                  "asynchronous advantage actor-critic: hogwild worker processes, shared RMSprop (Mnih et al. 2016)",
                  a3c.NUM_ENVS),
        _ddpg_spec("ddpg", "deep deterministic policy gradient (Lillicrap et al. 2016)"),
        _ddpg_spec("td3", "twin delayed DDPG with target policy smoothing (Fujimoto et al. 2018)"),
        AgentSpec("sac", SAC, SACConfig.preset, "soft actor-critic with automatic temperature (Haarnoja et al. 2018)"),
    )
}


def get_agent_spec(name: str) -> AgentSpec:
    """The spec for an agent name; an unknown name raises a :class:`UserError` with the closest names."""
    if name in AGENTS:
        return AGENTS[name]
    close = difflib.get_close_matches(name, AGENTS, n=3, cutoff=0.4)
    hint = f"did you mean {', '.join(close)}?" if close else f"choose one of {', '.join(AGENTS)}"
    raise UserError(f"unknown agent {name!r}: {hint}")


__all__ = [
    "Agent", "AgentSpec", "AGENTS", "get_agent_spec", "PolicyAgent",
    "DQN", "DQNConfig", "REINFORCE", "REINFORCEConfig", "A2C", "A2CConfig", "A3C", "A3CConfig", "PPO", "PPOConfig",
    "TRPO", "TRPOConfig", "DDPG", "DDPGConfig", "SAC", "SACConfig",
]
