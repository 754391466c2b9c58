"""Tabular TD control: Q-learning (Watkins 1989) and SARSA (Rummery & Niranjan 1994), with a Q table indexed by
state and epsilon-greedy behaviour (Sutton & Barto 2018, sections 6.4-6.5).

The agent reads the one-hot codes :func:`rlkit.envs.make_env` gives toy-text envs; the state is the code's index,
or for a Tuple of discrete spaces (Blackjack's player sum, dealer card, usable ace) the mixed-radix number of the
parts' indices, one table row per combination.
It is driven by the replay source, but its "replay" is a queue: each env transition reaches exactly one update, in
the order it arrived, and is then forgotten. For SARSA the queue holds a transition back until its sub-env's next
action has been chosen, so the target uses the action actually taken."""

from __future__ import annotations

import math
import os
from collections import deque
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import gymnasium as gym
import numpy as np
import torch

from rlkit.agents.base import Agent
from rlkit.config import COUNT, DISCOUNT, FINITE, NON_NEGATIVE, UNIT, Bound, Constraint, OneOf, check
from rlkit.envs import Family
from rlkit.errors import UserError
from rlkit.optim import linear_schedule

STEP_SIZES = ("constant", "1/n", "polynomial")


@dataclass
class TabularConfig:
    """Tabular Q-learning / SARSA hyperparameters (Sutton & Barto 2018, chapter 6)."""

    gamma: float = 0.99
    """Discount factor."""
    alpha: float = 0.1
    """Step size of the constant schedule."""
    step_size: str = "constant"
    """constant (alpha), 1/n or polynomial (1/n^omega), n the visits of the (s, a) being updated: the decaying
    ones satisfy Robbins-Monro, so the table converges (Even-Dar & Mansour 2003)."""
    omega: float = 0.6
    """Exponent of the polynomial step size 1/n^omega (in (1/2, 1] for convergence)."""
    start_e: float = 1.0
    """Initial exploration epsilon."""
    end_e: float = 0.05
    """Final exploration epsilon."""
    exploration_fraction: float = 0.5
    """Fraction of the total steps over which epsilon decays linearly."""
    eval_epsilon: float = 0.0
    """Epsilon when evaluating (0: the greedy policy)."""
    q_init: float = 0.0
    """Initial value of every table entry."""
    on_policy: bool = False
    """SARSA: bootstrap from the next action taken, not the greedy one (set by the agent name sarsa)."""
    learning_starts: int = 0
    """Env steps taken before the first update (the transitions of the warm-up are learnt from then, in order)."""
    train_frequency: int = 1
    """Env steps between updates; each update learns from every transition since the last one."""

    # The replay source reads these; a table learns from each transition once, so they are not choices.
    batch_size: ClassVar[int] = 1
    gradient_steps: ClassVar[int] = 1

    CHECKS: ClassVar[dict[str, Constraint]] = {
        "gamma": DISCOUNT, "alpha": Bound(0, 1, low_open=True), "step_size": OneOf(STEP_SIZES),
        "omega": Bound(0, 1, low_open=True), "start_e": UNIT, "end_e": UNIT, "exploration_fraction": UNIT,
        "eval_epsilon": UNIT, "q_init": FINITE, "learning_starts": NON_NEGATIVE, "train_frequency": COUNT,
    }
    READ_ONLY_WITH: ClassVar[dict[str, tuple[str, tuple[Any, ...]]]] = {
        "alpha": ("step_size", ("constant",)), "omega": ("step_size", ("polynomial",))}
    """Fields read only with another one's value (:func:`rlkit.config.refuse_unread_flags`)."""

    def __post_init__(self) -> None:
        check(self)


# Toy text: the textbook values (Sutton & Barto's examples use alpha 0.1), epsilon annealed over half the
# run so the greedy policy is what the last half refines. The budget is one Taxi needs (FrozenLake needs far less).
PRESETS: dict[Family, dict[str, Any]] = {
    "other": {"alpha": 0.1, "gamma": 0.99, "start_e": 1.0, "end_e": 0.05, "exploration_fraction": 0.5,
              "learning_starts": 0, "num_envs": 1, "total_steps": 300_000},
}

VARIANTS: dict[str, dict[str, Any]] = {"q-learning": {"on_policy": False}, "sarsa": {"on_policy": True}}


def step_size(schedule: str, alpha: float, omega: float, visits: int) -> float:
    """The step size of an update that is the ``visits``-th of its (s, a) (counting this one)."""
    if schedule == "constant":
        return alpha
    if schedule == "1/n":
        return 1.0 / visits
    return visits ** -omega


MAX_TABLE_ENTRIES = 50_000_000
"""The largest Q table (states x actions) the tabular agents build: 800 MB with its visit counts."""


def table_parts(space: gym.Space) -> tuple[tuple[int, int], ...]:
    """The ``(width, radix)`` parts of a table space's codes: :class:`~rlkit.envs.custom.OneHotBox`'s, or one
    one-hot block over the whole vector (a user's own code)."""
    return getattr(space, "parts", None) or ((int(space.shape[0]), int(space.shape[0])),)


def is_table_space(space: gym.Space) -> bool:
    """Whether ``space`` can hold the one-hot codes of a Discrete space: a vector Box within [0, 1]."""
    return (isinstance(space, gym.spaces.Box) and len(space.shape) == 1 and bool(np.all(space.low == 0))
            and bool(np.all(space.high == 1)))


# ---------------------------------------------------------------------------------------------- the queue
class TransitionBatch(NamedTuple):
    """Transitions in arrival order, as numpy arrays. ``B`` rows."""

    obs: np.ndarray
    """(B, S) one-hot codes."""
    actions: np.ndarray
    """(B,) int64."""
    rewards: np.ndarray
    """(B,) float64."""
    next_obs: np.ndarray
    """(B, S): the true next observation (the last one of a finished episode)."""
    terminated: np.ndarray
    """(B,) bool: the episode truly ended (no bootstrap)."""
    next_actions: np.ndarray
    """(B,) int64: the action taken in next_obs (SARSA), -1 where none was (Q-learning, episode ends)."""


@dataclass(frozen=True)
class QueueSpec:
    """A :class:`TransitionQueue`, built by the replay source."""

    on_policy: bool

    def build(self, num_envs: int, frame_stack: int, device: Any, seed: int | None) -> "TransitionQueue":
        return TransitionQueue(num_envs, self.on_policy, seed)


class TransitionQueue:
    """First in, first out: ``sample`` hands out every released transition and forgets it.

    On-policy, a transition waits until its sub-env's next ``add``, whose action is the one chosen in its next
    state; one that ends its episode is released at once (its next action belongs to another episode).
    """

    slots = 0  # no ring to refill after a resume: the source's refill wait is zero

    def __init__(self, num_envs: int, on_policy: bool, seed: int | None = None):
        self.num_envs, self.on_policy = num_envs, on_policy
        self.released: deque[tuple] = deque()
        self.waiting: list[tuple | None] = [None] * num_envs
        self.added = 0
        self.rng = np.random.default_rng(seed)  # draws nothing; the source saves its state with replay's

    def __len__(self) -> int:
        return len(self.released)

    def add(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, terminated: np.ndarray,
            truncated: np.ndarray, next_obs: np.ndarray) -> None:
        """One step of every sub-env; ``next_obs`` is the true next observation."""
        for e in range(self.num_envs):
            if self.waiting[e] is not None:  # actions[e] was chosen in its next state: the a' it waited for
                self.released.append((*self.waiting[e], int(actions[e])))
                self.waiting[e] = None
            row = (np.array(obs[e]), int(actions[e]), float(rewards[e]), np.array(next_obs[e]), bool(terminated[e]))
            if self.on_policy and not (terminated[e] or truncated[e]):
                self.waiting[e] = row
            else:
                self.released.append((*row, -1))
        self.added += self.num_envs

    def sample(self, batch_size: int) -> TransitionBatch:
        """Every released transition, oldest first (``batch_size`` is ignored: none is left behind)."""
        rows = [self.released.popleft() for _ in range(len(self.released))]
        obs, actions, rewards, next_obs, terminated, next_actions = zip(*rows)
        return TransitionBatch(np.stack(obs), np.array(actions, np.int64), np.array(rewards, np.float64),
                               np.stack(next_obs), np.array(terminated, bool), np.array(next_actions, np.int64))

    def save(self, path: str) -> None:
        """Write the released and the waiting transitions to ``path`` (.npz, no pickles)."""
        rows = [(*row, -1) for row in self.waiting if row is not None] + list(self.released)
        waiting = [e for e, row in enumerate(self.waiting) if row is not None]
        columns = list(zip(*rows)) if rows else [[]] * 6
        tmp = f"{path}.tmp.npz"
        with open(tmp, "wb") as f:
            np.savez(f, obs=np.array(columns[0]), actions=np.array(columns[1], np.int64),
                     rewards=np.array(columns[2], np.float64), next_obs=np.array(columns[3]),
                     terminated=np.array(columns[4], bool), next_actions=np.array(columns[5], np.int64),
                     waiting=np.array(waiting, np.int64), added=np.array(self.added))
        os.replace(tmp, path)

    def load(self, path: str) -> None:
        try:
            with np.load(path, allow_pickle=False) as data:
                d = {key: data[key] for key in data.files}
        except Exception as error:
            raise UserError(f"{path} is damaged or not a queue written by rlkit ({type(error).__name__}): delete it "
                            "to resume without it") from None
        rows = list(zip(d["obs"], d["actions"].tolist(), d["rewards"].tolist(), d["next_obs"],
                        d["terminated"].tolist(), d["next_actions"].tolist()))
        waiting = d["waiting"].tolist()
        self.waiting = [None] * self.num_envs
        for e, row in zip(waiting, rows):
            self.waiting[e] = row[:5]
        self.released = deque(rows[len(waiting):])
        self.added = int(d["added"])


# ---------------------------------------------------------------------------------------------- the agent
class TabularQ(Agent):
    """A Q table, states x actions, learnt by one-step TD control; ``visits`` counts the updates of each entry."""

    config_class = TabularConfig
    action_spaces = (gym.spaces.Discrete,)
    source_kind = "replay"
    env_families = ("other",)

    def __init__(self, config: TabularConfig, obs_space: gym.Space, action_space: gym.Space,
                 device: str | torch.device = "cpu", total_steps: int = 100_000, seed: int | None = None):
        super().__init__(config, obs_space, action_space, device, total_steps, seed)
        self.parts = table_parts(obs_space)
        self.n_states, self.n_actions = math.prod(radix for _, radix in self.parts), int(action_space.n)
        # The table stays on the host whatever the device: a lookup per step is cheaper than a transfer.
        self.q = torch.full((self.n_states, self.n_actions), float(config.q_init), dtype=torch.float64)
        self.visits = torch.zeros((self.n_states, self.n_actions), dtype=torch.int64)
        self.updates = 0

    @classmethod
    def check_spaces(cls, obs_space: gym.Space, action_space: gym.Space, name: str = "") -> None:
        super().check_spaces(obs_space, action_space, name)
        name = name or cls.__name__
        if not is_table_space(obs_space):
            raise UserError(f"{name} indexes a table by state and needs the one-hot codes of a Discrete "
                            f"observation space (toy text: FrozenLake, Taxi, CliffWalking), but this env has "
                            f"{obs_space}: use a function-approximation agent such as dqn")
        states = math.prod(radix for _, radix in table_parts(obs_space))
        if states * int(action_space.n) > MAX_TABLE_ENTRIES:
            raise UserError(f"{name} would need a table of {states:,} states x {action_space.n} actions, "
                            f"more than {MAX_TABLE_ENTRIES:,} entries: use a function-approximation agent such as dqn")

    def states(self, obs: np.ndarray) -> np.ndarray:
        """The state index of each row of ``obs`` (B, S) -> (B,): the one-hot code's index, or the mixed-radix
        number of the parts' values (the first part most significant)."""
        obs = np.asarray(obs)
        index, start = np.zeros(len(obs), dtype=np.int64), 0
        for width, radix in self.parts:
            block = obs[:, start:start + width]
            start += width
            if width == 1:  # a 0/1 entry
                valid, value = np.isin(block[:, 0], (0, 1)), block[:, 0]
            else:
                valid, value = (block.sum(-1) == 1) & (block.max(-1) == 1), block.argmax(-1)
            if not valid.all():
                raise UserError(f"{type(self).__name__} needs the one-hot codes of discrete observations; this row is "
                                f"not one: {obs[~valid][0].tolist()[:20]}")
            index = index * radix + value.astype(np.int64)
        return index

    # ------------------------------------------------------------------ acting
    @property
    def epsilon(self) -> float:
        c = self.config
        return linear_schedule(c.start_e, c.end_e, int(c.exploration_fraction * self.total_steps), self.step)

    def act(self, obs: np.ndarray, explore: bool = False, deterministic: bool = True) -> np.ndarray:
        """Epsilon-greedy: the schedule's epsilon with ``explore``, else ``eval_epsilon``. Exploring breaks ties
        between greedy actions at random (a fresh table is all ties); evaluating takes the first."""
        states = self.states(obs)
        epsilon, rng = (self.epsilon, self.rng) if explore else (self.config.eval_epsilon, self.eval_rng)
        n = len(states)
        random = rng.random(n) < epsilon
        actions = rng.integers(0, self.n_actions, n)
        q = self.q.numpy()[states]  # (B, A)
        if explore:
            best = q == q.max(-1, keepdims=True)
            greedy = (rng.random(q.shape) * best).argmax(-1)  # uniform among the maxima
        else:
            greedy = q.argmax(-1)
        return np.where(random, actions, greedy)

    # ------------------------------------------------------------------ learning
    def buffer_spec(self) -> QueueSpec:
        return QueueSpec(on_policy=self.config.on_policy)

    def td_target(self, reward: float, next_state: int, terminated: bool, next_action: int) -> float:
        """``r + gamma (1 - terminated) Q(s', a')``: a' the greedy action (Q-learning) or the one taken (SARSA).
        SARSA after a truncation has no a' (the next action starts another episode): it bootstraps from the
        epsilon-greedy policy's expected value at s', the mean of the a' it would have drawn."""
        if terminated:
            return reward
        q_next = self.q.numpy()[next_state]
        if not self.config.on_policy:
            value = q_next.max()
        elif next_action >= 0:
            value = q_next[next_action]
        else:
            value = self.epsilon * q_next.mean() + (1.0 - self.epsilon) * q_next.max()
        return reward + self.config.gamma * float(value)

    def update(self, batch: TransitionBatch) -> dict[str, float]:
        """One TD update per transition, in arrival order (a later row may bootstrap from an earlier row's entry)."""
        c = self.config
        q, visits = self.q.numpy(), self.visits.numpy()  # views: the tensors change with them
        states, next_states = self.states(batch.obs), self.states(batch.next_obs)
        td_errors = []
        for s, a, r, s_next, done, a_next in zip(states, batch.actions, batch.rewards, next_states,
                                                 batch.terminated, batch.next_actions):
            visits[s, a] += 1
            td_error = self.td_target(r, s_next, done, a_next) - q[s, a]
            q[s, a] += step_size(c.step_size, c.alpha, c.omega, int(visits[s, a])) * td_error
            td_errors.append(td_error)
        self.updates += len(td_errors)
        return {"losses/td_error": float(np.mean(np.abs(td_errors))), "losses/q_values": float(q.mean()),
                "charts/epsilon": self.epsilon}

    # ------------------------------------------------------------------ saving
    def state_dict(self) -> dict[str, Any]:
        return {"q": self.q.clone(), "visits": self.visits.clone(), "counters": {"updates": self.updates},
                "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["q"].shape != self.q.shape:
            raise UserError(f"the saved table is {tuple(state['q'].shape)} (states x actions) but this env needs "
                            f"{tuple(self.q.shape)}: evaluate it on the env it was trained on")
        self.q.copy_(state["q"])
        self.visits.copy_(state["visits"])
        self.updates = state["counters"]["updates"]
        self.rng.bit_generator.state = state["rng"]
