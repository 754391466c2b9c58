"""Monte Carlo tree search over OpenSpiel states: PUCT selection with Dirichlet noise at the root (Silver et al.
2018, AlphaZero), or UCT with random rollouts (pure MCTS, the baseline AlphaZero is measured against).

One simulation walks from the root by the selection rule to a leaf, asks an evaluator for the leaf's move priors and
its value for the player to move, expands the leaf and backs the value up the path: each node adds the value from
the side of the player whose move led to it, so a two-player value changes sign at every level. ``MCTS.search`` runs
the simulations of several trees in lockstep, so one evaluator call (one batched forward pass of a net) serves a
leaf of every tree.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from rlkit.errors import UserError

Evaluator = Callable[[list[Any]], tuple[np.ndarray, np.ndarray]]
"""``states -> (priors (n, num_actions), values (n,))``: move probabilities over the game's distinct actions (only
the legal ones are read) and each state's value in [-1, 1] for the player to move."""

RULES = ("puct", "uct")


class Node:
    """One state of a search tree, reached by the move of ``mover`` (-1 for a root that no move reached).

    ``value_sum`` is from ``mover``'s side: the parent, where ``mover`` is to play, maximizes it.
    """

    __slots__ = ("prior", "mover", "visits", "value_sum", "children", "returns")

    def __init__(self, prior: float = 1.0, mover: int = -1):
        self.prior, self.mover = prior, mover
        self.visits = 0
        self.value_sum = 0.0
        self.children: dict[int, Node] = {}
        self.returns: tuple[float, ...] | None = None
        """The game's outcome per player, once the search found this node terminal."""

    def value(self) -> float:
        """Mean backed-up value for ``mover``; 0 (a draw) before the first visit."""
        return self.value_sum / self.visits if self.visits else 0.0

    @property
    def expanded(self) -> bool:
        return bool(self.children)


class Tree:
    """A search tree over one game: the root's state and node. With ``reuse``, :meth:`advance` keeps the subtree
    below the move played (its visits and values), as AlphaGo Zero does; without, the next search starts afresh."""

    def __init__(self, state: Any, reuse: bool = True):
        self.state = state.clone()
        self.root = Node()
        self.reuse = reuse

    def advance(self, action: int) -> None:
        """Play ``action`` (either player's) at the root."""
        child = self.root.children.get(action)
        self.root = child if child is not None and self.reuse else Node(mover=self.state.current_player())
        self.state.apply_action(action)


def visit_distribution(root: Node, num_actions: int) -> np.ndarray:
    """The root's visit counts over the game's distinct actions, normalized: AlphaZero's policy target pi."""
    counts = np.zeros(num_actions, dtype=np.float32)
    for action, child in root.children.items():
        counts[action] = child.visits
    return counts / counts.sum()


def sample_action(root: Node, temperature: float, rng: np.random.Generator) -> int:
    """A move by visit count: with probability proportional to ``N(a) ** (1 / temperature)``, or the most visited
    move at temperature 0 (the first in action order on a tie)."""
    actions = list(root.children)
    counts = np.array([root.children[a].visits for a in actions], dtype=np.float64)
    if temperature == 0:
        return actions[int(np.argmax(counts))]
    weights = counts ** (1.0 / temperature)
    return actions[int(rng.choice(len(actions), p=weights / weights.sum()))]


def backup(path: Sequence[Node], returns: Sequence[float]) -> None:
    """Add one visit and the outcome ``returns`` (per player) to every node of ``path``, each from its mover's
    side: in a two-player zero-sum game the sign alternates level by level."""
    for node in path:
        node.visits += 1
        if node.mover >= 0:
            node.value_sum += returns[node.mover]


def two_player_returns(player: int, value: float) -> tuple[float, float]:
    """``value`` for ``player`` as returns of both players of a zero-sum game."""
    return (value, -value) if player == 0 else (-value, value)


class RolloutEvaluator:
    """Pure MCTS's evaluator: uniform priors over the legal moves and, as the value, the outcome for the player to
    move of ``rollouts`` games played on by uniformly random moves (averaged)."""

    def __init__(self, num_actions: int, rollouts: int = 1, seed: int | None = None):
        self.num_actions, self.rollouts = num_actions, rollouts
        self.rng = np.random.default_rng(seed)

    def __call__(self, states: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        priors = np.zeros((len(states), self.num_actions), dtype=np.float32)
        values = np.zeros(len(states), dtype=np.float32)
        for i, state in enumerate(states):
            legal = state.legal_actions()
            priors[i, legal] = 1.0 / len(legal)
            player, total = state.current_player(), 0.0
            for _ in range(self.rollouts):
                rollout = state.clone()
                while not rollout.is_terminal():
                    moves = rollout.legal_actions()
                    rollout.apply_action(moves[int(self.rng.integers(len(moves)))])
                total += rollout.returns()[player]
            values[i] = total / self.rollouts
        return priors, values


class MCTS:
    """Tree search with ``simulations`` simulations per move.

    Args:
        evaluator: priors and values of leaves (:data:`Evaluator`): a policy/value net, or :class:`RolloutEvaluator`.
        simulations: simulations per search, beside the root's own expansion.
        rule: ``puct``, AlphaZero's ``Q(s,a) + C(s) P(s,a) sqrt(N(s)) / (1 + N(s,a))`` with
            ``C(s) = log((1 + N(s) + c_base) / c_base) + c_init``; or ``uct``, ``Q + c_init sqrt(ln N(s) / N(s,a))``
            trying every move once first (the priors are not read). ``N(s)`` counts the node's own evaluation
            too (as OpenSpiel does), so a node's first simulation follows the priors rather than action order.
        c_init, c_base: the exploration constants (AlphaZero: 1.25 and 19652; with few simulations ``C(s)`` is
            about ``c_init``).
        dirichlet_alpha, dirichlet_epsilon: a search with ``explore`` mixes ``Dir(alpha)`` noise into the root's
            priors, ``(1 - epsilon) P + epsilon noise`` (AlphaZero: alpha 0.3 for chess, epsilon 0.25).
        seed: of the noise.
    """

    def __init__(self, evaluator: Evaluator, simulations: int, rule: str = "puct", c_init: float = 1.25,
                 c_base: float = 19652.0, dirichlet_alpha: float = 0.3, dirichlet_epsilon: float = 0.25,
                 seed: int | None = None):
        if rule not in RULES:
            raise UserError(f"unknown selection rule {rule!r}: use {' or '.join(RULES)}")
        self.evaluator, self.simulations, self.rule = evaluator, simulations, rule
        self.c_init, self.c_base = c_init, c_base
        self.dirichlet_alpha, self.dirichlet_epsilon = dirichlet_alpha, dirichlet_epsilon
        self.rng = np.random.default_rng(seed)

    def search(self, trees: Sequence[Tree], explore: bool = False) -> None:
        """Run the simulations on every tree (none may be at a finished game); the visit counts at each root then
        say which move the search prefers."""
        fresh = [tree for tree in trees if not tree.root.expanded]
        if fresh:  # the root's own evaluation: a visit, but not one of the simulations
            self._evaluate_and_backup([[tree.root] for tree in fresh], [tree.state.clone() for tree in fresh])
        if explore and self.dirichlet_epsilon > 0:
            for tree in trees:
                self.add_noise(tree.root)
        for _ in range(self.simulations):
            paths, states = [], []
            for tree in trees:
                node, state, path = tree.root, tree.state.clone(), [tree.root]
                while node.expanded:
                    action, node = self.select(node)
                    state.apply_action(action)
                    path.append(node)
                paths.append(path)
                states.append(state)
            self._evaluate_and_backup(paths, states)

    def add_noise(self, root: Node) -> None:
        noise = self.rng.dirichlet([self.dirichlet_alpha] * len(root.children))
        for child, eta in zip(root.children.values(), noise):
            child.prior = (1 - self.dirichlet_epsilon) * child.prior + self.dirichlet_epsilon * float(eta)

    def select(self, node: Node) -> tuple[int, Node]:
        """The child the selection rule picks (the first in action order on a tie)."""
        if self.rule == "uct":
            log_n = math.log(node.visits)
            return max(node.children.items(), key=lambda item: math.inf if item[1].visits == 0 else
                       item[1].value() + self.c_init * math.sqrt(log_n / item[1].visits))
        c = math.log((1 + node.visits + self.c_base) / self.c_base) + self.c_init
        scale = c * math.sqrt(node.visits)
        return max(node.children.items(),
                   key=lambda item: item[1].value() + scale * item[1].prior / (1 + item[1].visits))

    def _evaluate_and_backup(self, paths: list[list[Node]], states: list[Any]) -> None:
        """Expand each path's leaf with the evaluator's priors (one call for all leaves) and back up its value; a
        terminal leaf backs up the game's outcome instead."""
        pending = []
        for path, state in zip(paths, states):
            leaf = path[-1]
            if leaf.returns is None and state.is_terminal():
                leaf.returns = tuple(state.returns())
            if leaf.returns is not None:
                backup(path, leaf.returns)
            else:
                pending.append((path, state))
        if not pending:
            return
        priors, values = self.evaluator([state for _, state in pending])
        for (path, state), prior, value in zip(pending, priors, values):
            legal = state.legal_actions()
            p = np.asarray(prior, dtype=np.float64)[legal]
            p = p / p.sum() if p.sum() > 0 else np.full(len(legal), 1.0 / len(legal))
            player = state.current_player()
            path[-1].children = {action: Node(float(pa), player) for action, pa in zip(legal, p)}
            backup(path, two_player_returns(player, float(value)))
