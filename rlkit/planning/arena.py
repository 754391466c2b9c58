"""Matches between players of a board game: the arena that gates a new net against the best one, and the
evaluation against a random player and pure MCTS. Games run in lockstep, so a player's searches of all its games
share one evaluator call per simulation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from rlkit.planning.mcts import MCTS, Tree, sample_action


class Player(Protocol):
    def choose(self, trees: list[Tree], move: int) -> list[int]:
        """A move for each tree's game (``move``: how many moves were played before it, for a temperature
        schedule). The caller plays it on the trees afterwards."""


class RandomPlayer:
    """Uniformly random legal moves."""

    def __init__(self, seed: int | None = None):
        self.rng = np.random.default_rng(seed)

    def choose(self, trees: list[Tree], move: int) -> list[int]:
        return [(legal := tree.state.legal_actions())[int(self.rng.integers(len(legal)))] for tree in trees]


class MCTSPlayer:
    """Plays the move a search visits most; for the first ``temperature_moves`` moves of a game it samples in
    proportion to the visits instead (temperature 1), so that matches between two fixed players are not the same
    two games over and over. No Dirichlet noise."""

    def __init__(self, mcts: MCTS, temperature_moves: int = 0, seed: int | None = None):
        self.mcts, self.temperature_moves = mcts, temperature_moves
        self.rng = np.random.default_rng(seed)

    def choose(self, trees: list[Tree], move: int) -> list[int]:
        self.mcts.search(trees)
        temperature = 1.0 if move < self.temperature_moves else 0.0
        return [sample_action(tree.root, temperature, self.rng) for tree in trees]


@dataclass(frozen=True)
class Record:
    """One game of a match: the outcome for each contestant and the moves played."""

    returns: tuple[float, float]
    moves: int
    first: int
    """The contestant who moved first."""


def play_games(game: Any, players: Sequence[Player], games: int, reuse: bool = True) -> list[Record]:
    """``games`` games of ``players[0]`` against ``players[1]``, who alternate moving first (``players[0]`` in the
    even-numbered games). Each contestant searches its own tree of each game, kept across moves with ``reuse``."""
    seats = [(0, 1) if i % 2 == 0 else (1, 0) for i in range(games)]  # seats[i][p]: the contestant playing as p
    states = [game.new_initial_state() for _ in range(games)]
    trees = [[Tree(state, reuse), Tree(state, reuse)] for state in states]
    move = 0
    while not all(state.is_terminal() for state in states):
        for contestant in (0, 1):
            turn = [i for i, state in enumerate(states)
                    if not state.is_terminal() and seats[i][state.current_player()] == contestant]
            if not turn:
                continue
            actions = players[contestant].choose([trees[i][contestant] for i in turn], move)
            for i, action in zip(turn, actions):
                states[i].apply_action(action)
                for tree in trees[i]:
                    tree.advance(action)
        move += 1
    records = []
    for state, seat in zip(states, seats):
        returns = state.returns()
        records.append(Record((returns[seat.index(0)], returns[seat.index(1)]), state.move_number(), seat[0]))
    return records


def win_draw_loss(records: Sequence[Record]) -> dict[str, float]:
    """The first contestant's share of wins, draws and losses, and its score (a win 1, a draw 1/2)."""
    outcomes = np.array([record.returns[0] for record in records])
    win, draw, loss = float((outcomes > 0).mean()), float((outcomes == 0).mean()), float((outcomes < 0).mean())
    return {"win": win, "draw": draw, "loss": loss, "score": win + draw / 2}
