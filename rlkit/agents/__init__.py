"""Agents, and the names ``train.py --agent`` knows them by."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from rlkit.agents import a2c, a3c, ddpg, dqn, ppo, reinforce, sac, tabular, trpo
from rlkit.agents.a2c import A2C, A2CConfig
from rlkit.agents.alphazero import AlphaZero, AlphaZeroConfig
from rlkit.agents.a3c import A3C, A3CConfig
from rlkit.agents.base import AGENT_NAMES, Agent
from rlkit.agents.ddpg import DDPG, DDPGConfig
from rlkit.agents.dqn import DQN, DQNConfig
from rlkit.agents.policy_gradient import PolicyAgent
from rlkit.agents.ppo import PPO, PPOConfig
from rlkit.agents.reinforce import REINFORCE, REINFORCEConfig
from rlkit.agents.sac import SAC, SACConfig
from rlkit.agents.tabular import TabularConfig, TabularQ
from rlkit.agents.trpo import TRPO, TRPOConfig
from rlkit.envs import Family
from rlkit.errors import UserError, close_names

RUN_KEYS = ("num_envs", "total_steps")
WARMUP_FIELDS = ("learning_starts",)
"""Config fields counting env steps of warm-up (random actions, no updates) before learning starts."""
WARMUP_FRACTION = 0.05
"""A run shorter than its preset's budget warms up for at most this share of its own budget, or the share the preset
had, if larger: a preset's warm-up must not eat a short run (see :func:`rlkit.hyperparams.budgeted`)."""
"""Keys of a preset row that belong to the run, not to the agent's config."""


class RunDefaults(NamedTuple):
    """What a run of this agent on an env family takes unless the command line says otherwise."""

    num_envs: int
    """Sub-environments (A3C: per worker)."""
    total_steps: int
    """Env steps of the whole run."""


@dataclass(frozen=True)
class AgentSpec:
    """How a command-line agent name maps to a class, its preset table and its variant of the config."""

    name: str
    agent_class: type[Agent]
    presets: Mapping[Family, Mapping[str, Any]]
    """The agent module's ``PRESETS``: env family -> config changes plus ``num_envs`` and ``total_steps``."""
    help: str
    variant: Mapping[str, Any] = field(default_factory=dict)
    """Config changes this name makes on every preset (``double-dqn``: double targets)."""
    hyperparams: str = ""
    """The shipped per-env file it reads (``rlkit/hyperparams/<name>.yml``): its own name unless set."""

    @property
    def hyperparams_file(self) -> str:
        """The stem of its shipped per-env file (the DQN variants read DQN's)."""
        return self.hyperparams or self.name

    @property
    def families(self) -> tuple[Family, ...]:
        """The env families it has a preset for."""
        return tuple(self.presets)

    def _row(self, family: Family) -> Mapping[str, Any]:
        if family not in self.presets:
            raise UserError(f"{self.name} has no preset for {family} envs: it supports {', '.join(self.families)} "
                            "envs")
        return self.presets[family]

    def preset(self, family: Family) -> Any:
        """The config with the published values for ``family`` (and this name's variant)."""
        values = {k: v for k, v in self._row(family).items() if k not in RUN_KEYS}
        return self.agent_class.config_class(**{**values, **self.variant})

    def run_defaults(self, family: Family) -> RunDefaults:
        row = self._row(family)
        return RunDefaults(num_envs=row["num_envs"], total_steps=row["total_steps"])


AGENTS: dict[str, AgentSpec] = {
    spec.name: spec
    for spec in (
        AgentSpec("dqn", DQN, dqn.PRESETS, "Deep Q-network (Mnih et al. 2015)"),
        AgentSpec("double-dqn", DQN, dqn.PRESETS, "DQN with double Q-learning targets (van Hasselt et al. 2016)",
                  dqn.VARIANTS["double-dqn"], hyperparams="dqn"),
        AgentSpec("dueling-dqn", DQN, dqn.PRESETS, "Double DQN with a dueling head (Wang et al. 2016)",
                  dqn.VARIANTS["dueling-dqn"], hyperparams="dqn"),
        AgentSpec("bootstrapped-dqn", DQN, dqn.PRESETS, "Bootstrapped DQN, K heads with masks (Osband et al. 2016)",
                  dqn.VARIANTS["bootstrapped-dqn"], hyperparams="dqn"),
        AgentSpec("c51", DQN, dqn.C51_PRESETS, "distributional DQN, 51 atoms (Bellemare et al. 2017)",
                  dqn.VARIANTS["c51"]),
        AgentSpec("rainbow", DQN, dqn.RAINBOW_PRESETS,
                  "C51 + double + dueling + noisy nets + prioritized replay + n-step (Hessel et al. 2018)",
                  dqn.VARIANTS["rainbow"]),
        AgentSpec("reinforce", REINFORCE, reinforce.PRESETS,
                  "Monte Carlo policy gradient with reward-to-go and a learned baseline (Williams 1992)"),
        AgentSpec("a2c", A2C, a2c.PRESETS, "synchronous advantage actor-critic with GAE (Mnih et al. 2016)"),
        AgentSpec("ppo", PPO, ppo.PRESETS, "proximal policy optimization, clipped (Schulman et al. 2017)"),
        AgentSpec("trpo", TRPO, trpo.PRESETS, "trust region policy optimization (Schulman et al. 2015)"),
        AgentSpec("a3c", A3C, a3c.PRESETS,
                  "asynchronous advantage actor-critic: hogwild worker processes, shared RMSprop (Mnih et al. 2016)"),
        AgentSpec("ddpg", DDPG, ddpg.PRESETS, "deep deterministic policy gradient (Lillicrap et al. 2016)"),
        AgentSpec("td3", DDPG, ddpg.PRESETS, "twin delayed DDPG with target policy smoothing (Fujimoto et al. 2018)",
                  ddpg.VARIANTS["td3"]),
        AgentSpec("sac", SAC, sac.PRESETS, "soft actor-critic with automatic temperature (Haarnoja et al. 2018)"),
        AgentSpec("q-learning", TabularQ, tabular.PRESETS, "tabular Q-learning, epsilon-greedy (Watkins 1989)",
                  tabular.VARIANTS["q-learning"]),
        AgentSpec("sarsa", TabularQ, tabular.PRESETS,
                  "tabular SARSA: on-policy TD control from the next action taken (Rummery & Niranjan 1994)",
                  tabular.VARIANTS["sarsa"]),
    )
}


AGENT_NAMES.update({name: spec.agent_class for name, spec in AGENTS.items()})

SELF_PLAY_AGENTS: dict[str, str] = {
    "alphazero": "AlphaZero: PUCT tree search guided by a policy/value ResNet, trained on self-play (Silver et al. "
                 "2018), with AlphaGo Zero's arena",
}
"""Agents of board games, trained by self-play (:mod:`rlkit.jobs.selfplay`), not in a gym env."""


def get_agent_spec(name: str) -> AgentSpec:
    """The spec for an agent name; an unknown name raises a :class:`UserError` with the closest names."""
    if name in AGENTS:
        return AGENTS[name]
    if name in SELF_PLAY_AGENTS:
        raise UserError(f"{name} plays board games in a self-play run, not in a gym env: train it with train.py "
                        f"--agent {name} --env connect_four (or tic_tac_toe)")
    close = close_names(name, [*AGENTS, *SELF_PLAY_AGENTS], cutoff=0.4)
    hint = f"did you mean {', '.join(close)}?" if close else f"choose one of {', '.join(AGENTS)}"
    raise UserError(f"unknown agent {name!r}: {hint}")


__all__ = [
    "Agent", "AgentSpec", "AGENTS", "RunDefaults", "get_agent_spec", "PolicyAgent",
    "DQN", "DQNConfig", "REINFORCE", "REINFORCEConfig", "A2C", "A2CConfig", "A3C", "A3CConfig", "PPO", "PPOConfig",
    "TRPO", "TRPOConfig", "DDPG", "DDPGConfig", "SAC", "SACConfig",
    "TabularQ", "TabularConfig", "AlphaZero", "AlphaZeroConfig", "SELF_PLAY_AGENTS",
]
