"""Self-play for tree-search learners (AlphaZero): games of the best net against itself into a replay of
(position, visit distribution, outcome), and minibatches sampled from it.

The clock counts training updates: an iteration plays ``games_per_iteration`` games (more at the start, until
replay holds a batch) and then hands out ``updates_per_iteration`` batches, one per step. Every ``arena_interval``
iterations it first plays the arena: the trained net against the best one, each moving first in half the games;
the trained net becomes the best at a score of ``arena_threshold`` or more.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rlkit.agents.alphazero import AlphaZero
from rlkit.buffers.positions import PositionBatch, PositionReplay
from rlkit.planning.arena import MCTSPlayer, play_games, win_draw_loss
from rlkit.planning.games import encode, input_shape
from rlkit.planning.mcts import Tree, sample_action, visit_distribution
from rlkit.sources.episodes import Episodes


class SelfPlaySource:
    """Self-play games by ``learner.self_play_net`` in ``game`` (an OpenSpiel game), replay, and the arena.

    ``pop_finished`` reports each self-play game as (step, outcome for the first player, moves).
    """

    def __init__(self, learner: AlphaZero, game: Any, seed: int | None = None):
        self.learner, self.game = learner, game
        c = learner.config
        self.num_actions = game.num_distinct_actions()
        self.replay = PositionReplay(c.buffer_size, input_shape(game), self.num_actions, learner.device, seed)
        self.rng = np.random.default_rng(seed)  # move sampling, and the seeds of each search's noise
        self.steps = 0
        self.iterations = 0
        self.pending = 0  # updates left in this iteration
        self.episodes = Episodes()

    @property
    def recent_returns(self) -> list[float]:
        return list(self.episodes.recent_returns)

    def _seed(self) -> int:
        return int(self.rng.integers(2**63))

    def next(self) -> PositionBatch:
        c = self.learner.config
        arena: dict[str, float] = {}
        if self.pending == 0:
            if c.arena_games and self.iterations and self.iterations % c.arena_interval == 0:
                arena = self.play_arena()
            self.play_games()
            while len(self.replay) < c.batch_size:
                self.play_games()
            self.iterations += 1
            self.pending = c.updates_per_iteration
        self.pending -= 1
        self.steps += 1
        return self.replay.sample(c.batch_size, arena)

    def play_games(self) -> None:
        """One round of self-play games, in lockstep, into replay: each move's position, the root's visit
        distribution after a search with Dirichlet noise, and at the end the outcome for the player who moved."""
        c = self.learner.config
        mcts = self.learner.mcts(self.learner.self_play_net, seed=self._seed())
        trees = [Tree(self.game.new_initial_state(), c.reuse_tree) for _ in range(c.games_per_iteration)]
        histories: list[list[tuple[np.ndarray, np.ndarray, int]]] = [[] for _ in trees]
        move = 0
        while live := [i for i, tree in enumerate(trees) if not tree.state.is_terminal()]:
            mcts.search([trees[i] for i in live], explore=True)
            temperature = 1.0 if move < c.temperature_moves else 0.0
            for i in live:
                tree = trees[i]
                histories[i].append((encode(tree.state), visit_distribution(tree.root, self.num_actions),
                                     tree.state.current_player()))
                tree.advance(sample_action(tree.root, temperature, self.rng))
            move += 1
        for tree, history in zip(trees, histories):
            returns = tree.state.returns()
            for obs, policy, player in history:
                self.replay.add(obs, policy, returns[player])
            self.episodes.add(self.steps, returns[0], len(history))

    def play_arena(self) -> dict[str, float]:
        """The trained net against the best one; promotes the trained net if it scores enough."""
        c, learner = self.learner.config, self.learner
        simulations = c.arena_simulations or c.simulations
        new, best = (MCTSPlayer(learner.mcts(net, simulations, self._seed()), c.temperature_moves, self._seed())
                     for net in (learner.net, learner.best_net))
        score = win_draw_loss(play_games(self.game, [new, best], c.arena_games, c.reuse_tree))["score"]
        promoted = score >= c.arena_threshold
        if promoted:
            learner.promote()
        return {"arena/score": score, "arena/promoted": float(promoted)}

    def pop_finished(self) -> list[tuple[int, float, int]]:
        return self.episodes.pop_finished()

    def reset(self, seed: int | None = None) -> None:
        """Nothing to reset: every iteration starts new games."""

    def close(self) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "iterations": self.iterations, "pending": self.pending,
                "rng": self.rng.bit_generator.state, **self.episodes.state_dict(), "replay": self.replay.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps, self.iterations, self.pending = int(state["steps"]), int(state["iterations"]), int(state["pending"])
        self.rng.bit_generator.state = state["rng"]
        self.episodes.load_state_dict(state)
        self.replay.load_state_dict(state["replay"])
