"""What every agent is: a learner (``update``) that can also act (``act``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch

from rlkit.config import COUNT, DISCOUNT, NON_NEGATIVE, Constraint, check
from rlkit.envs.custom import check_observation_space
from rlkit.errors import UserError


@dataclass
class ReplayConfig:
    """Fields of every agent that learns from replay; :class:`rlkit.sources.ReplaySource` reads them."""

    buffer_size: int = 1_000_000
    """Replay capacity in transitions."""
    batch_size: int = 256
    """Transitions per update."""
    gamma: float = 0.99
    """Discount factor."""
    learning_starts: int = 25_000
    """Env steps collected before the first update.
    A run shorter than the preset's budget gets at most 5% of its steps (or the preset's share, if larger)
    unless a flag or --config sets it."""
    train_frequency: int = 1
    """Env steps between training phases."""
    gradient_steps: int = 1
    """Updates in each training phase (updates per env step = gradient_steps / train_frequency)."""

    CHECKS: ClassVar[dict[str, Constraint]] = {
        "buffer_size": COUNT, "batch_size": COUNT, "gamma": DISCOUNT, "learning_starts": NON_NEGATIVE,
        "train_frequency": COUNT, "gradient_steps": COUNT,
    }

    def __post_init__(self) -> None:
        check(self)
        if self.buffer_size < self.batch_size:
            raise UserError(f"--buffer-size {self.buffer_size} is smaller than --batch-size {self.batch_size}: a batch "
                            "is drawn from replay, so raise --buffer-size or lower --batch-size")


AGENT_NAMES: dict[str, type["Agent"]] = {}
"""Command-line name -> agent class, filled in by the registry (:data:`rlkit.agents.AGENTS`), which imports this
module: error messages name the agents that fit."""


class Agent(ABC):
    """Base class of all agents. It knows nothing about the loop that drives it.

    Subclasses set ``config_class`` and ``action_spaces`` and implement ``act``, ``update``, ``state_dict`` and
    ``load_state_dict``.

    One clock: ``step`` is the number of env steps the run has taken. Only the source writes it (before every
    ``act(explore=True)`` and before it hands out a batch); schedules (epsilon, target syncs, warm-up, learning-rate
    annealing) read it, and ``act`` never changes it. Random draws of ``act(explore=True)`` come from ``rng``, those
    of evaluation from ``eval_rng`` (reseeded by :meth:`seed_evaluation`), so evaluating never changes training.
    """

    config_class: ClassVar[type]
    action_spaces: ClassVar[tuple[type[gym.Space], ...]]
    """The action space classes this agent can act in."""
    source_kind: ClassVar[str]
    """The source it learns from (a key of :data:`rlkit.sources.SOURCE_KINDS`): ``replay``, ``rollout``, ``async``."""
    env_families: ClassVar[tuple[str, ...]] = ("atari", "mujoco", "other")
    """The env families whose observations it can read (a table reads only toy text's, in "other")."""
    data_parallel: ClassVar[bool] = False
    """Whether it may run under torchrun (each process collects its own data, gradients are averaged)."""
    remote_actors: ClassVar[bool] = False
    """Whether it may run under torchrun as one learner fed by actor processes (:mod:`rlkit.sources.actors`)."""

    def __init__(self, config: Any, obs_space: gym.Space, action_space: gym.Space, device: str | torch.device,
                 total_steps: int, seed: int | None):
        self.check_spaces(obs_space, action_space)
        self.config = config
        self.obs_space, self.action_space = obs_space, action_space
        self.device = torch.device(device)
        self.total_steps = total_steps
        self.step = 0
        self.rng = np.random.default_rng(seed)
        self.eval_rng = np.random.default_rng(seed)

    def seed_evaluation(self, seed: int) -> None:
        """Restart the evaluation policy's random draws from ``seed`` (evaluation calls this first)."""
        self.eval_rng = np.random.default_rng(seed)

    @classmethod
    def check_spaces(cls, obs_space: gym.Space, action_space: gym.Space, name: str = "") -> None:
        """Raise a :class:`UserError` naming the problem if this agent cannot act in ``action_space`` or read
        ``obs_space`` (:func:`rlkit.envs.check_observation_space`, which :func:`~rlkit.envs.make_env` applies too).
        ``name`` is the agent's name in the message (the command-line name: ``td3``, not its class ``DDPG``)."""
        if not isinstance(action_space, cls.action_spaces):
            names = [space.__name__ for space in cls.action_spaces]
            wanted = " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
            fitting = [name for name, agent_class in AGENT_NAMES.items()
                       if isinstance(action_space, agent_class.action_spaces)]
            raise UserError(
                f"{name or cls.__name__} needs a {wanted} action space but this env has {action_space}: "
                f"use an agent for {type(action_space).__name__} actions ({', '.join(fitting) or 'none yet'})"
            )
        check_observation_space(obs_space)

    @abstractmethod
    def act(self, obs: np.ndarray, explore: bool = False, deterministic: bool = True) -> np.ndarray:
        """Actions for a batch of observations. ``explore`` selects the behaviour policy used in training;
        otherwise ``deterministic`` picks the evaluation policy's mode (``False``: sample from it)."""

    @abstractmethod
    def buffer_spec(self) -> Any:
        """The storage its source builds for it (:class:`~rlkit.buffers.ReplaySpec`, :class:`~rlkit.buffers.RolloutSpec`;
        None for a source that needs none)."""

    @abstractmethod
    def update(self, batch: Any) -> dict[str, float]:
        """One learning step on ``batch``; returns metrics named like TensorBoard tags (``losses/td_loss``)."""

    def episode_start(self, mask: np.ndarray) -> None:
        """Called with a mask of sub-envs that start a new training episode. Most agents ignore it."""

    def new_episodes(self, mask: np.ndarray) -> None:
        """Evaluation calls this with a mask of its sub-envs that start a new game (all of them after a reset), so
        an agent with a memory of the game (a recurrent policy) forgets it. Most agents ignore it."""

    def acting_state(self) -> dict[str, Any]:
        """What an actor process needs to act as this agent does (:mod:`rlkit.sources.actors` sends it): the
        policy's weights, not the optimizers and targets. Defaults to the whole :meth:`state_dict`."""
        return self.state_dict()

    def load_acting_state(self, state: dict[str, Any]) -> None:
        """Take what :meth:`acting_state` returned."""
        self.load_state_dict(state)

    def use_actor_exploration(self, index: int, count: int) -> None:
        """Make this copy actor ``index`` of ``count`` remote actors. Agents whose actors explore alike apart from
        their random draws (seeded per actor) ignore it; the DQN family gives each its own epsilon (Ape-X)."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Networks, optimizer states and counters, as tensors and plain data."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
