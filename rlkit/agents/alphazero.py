"""AlphaZero (Silver et al. 2018): a policy/value net trained on self-play games, each move chosen by a PUCT
tree search guided by the net. The loss of one update, on positions s with the search's visit distribution pi and
the game's outcome z for the player to move:

    l = (z - v)^2 - pi . log p + c ||theta||^2

Self-play games come from the best net so far; an arena (AlphaGo Zero's evaluator, Silver et al. 2017) replaces it
by the trained net when the trained net scores at least ``arena_threshold`` against it. ``arena_games 0`` is
AlphaZero's own scheme: self-play always by the latest net. The games, the replay and the arena are the self-play
source's (:mod:`rlkit.sources.selfplay`); this module is the net, the search settings and the update.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from rlkit.buffers.positions import PositionBatch
from rlkit.config import COUNT, NON_NEGATIVE, POSITIVE, UNIT, Constraint, OneOf, check
from rlkit.errors import UserError
from rlkit.nets.board import PolicyValueNet
from rlkit.optim import make_adam, optimizer_step
from rlkit.planning.games import encode
from rlkit.planning.mcts import MCTS

OPTIMIZERS = ("sgd", "adam")


@dataclass
class AlphaZeroConfig:
    """AlphaZero's hyperparameters. Defaults are the paper's for chess where it states them (800 simulations,
    c_init 1.25, c_base 19652, Dirichlet alpha 0.3 and epsilon 0.25, 19 residual blocks of 256 channels, SGD with
    momentum 0.9 from learning rate 0.2, batch 4096, L2 1e-4); the games' presets (:data:`PRESETS`) scale them down."""

    simulations: int = 800
    """Simulations per move of self-play (and of the arena and evaluation unless set there)."""
    c_init: float = 1.25
    """PUCT exploration constant; C(s) = log((1 + N(s) + c_base) / c_base) + c_init, about c_init for small N(s)."""
    c_base: float = 19652.0
    """PUCT's visit scale: exploration grows slowly once a node has many visits."""
    dirichlet_alpha: float = 0.3
    """Concentration of the root noise (the paper: 0.3 chess, 0.15 shogi, 0.03 Go, about 10 / typical legal moves)."""
    dirichlet_epsilon: float = 0.25
    """Weight of the noise in the root's priors during self-play (0: no noise)."""
    temperature_moves: int = 30
    """Self-play samples the first this many moves of a game in proportion to visit counts (temperature 1), then
    plays the most visited move (temperature -> 0). Arena games do the same (without noise), so that two fixed nets
    do not play the same two games over and over; evaluation always plays the most visited move."""
    reuse_tree: bool = True
    """Keep the searched subtree below the move played for the next move's search."""
    games_per_iteration: int = 64
    """Self-play games per iteration, played in lockstep so that the net evaluates their leaves as one batch (the
    paper plays and trains asynchronously; iterations are AlphaGo Zero's and OpenSpiel's synchronous scheme)."""
    updates_per_iteration: int = 100
    """Training updates after each iteration's games (the run's steps count updates)."""
    buffer_size: int = 500_000
    """Replay capacity in positions, the newest kept (AlphaGo Zero kept the last 500,000 games)."""
    batch_size: int = 4096
    """Positions per update, drawn uniformly from replay."""
    channels: int = 256
    """Channels of the residual tower."""
    blocks: int = 19
    """Residual blocks in the tower."""
    value_hidden: int = 256
    """Hidden units of the value head."""
    optimizer: str = "sgd"
    """sgd (with momentum, the paper's) or adam (OpenSpiel's AlphaZero)."""
    learning_rate: float = 0.2
    """Step size (the paper decays 0.2 -> 0.02 -> 0.002 over training; here it stays fixed)."""
    momentum: float = 0.9
    """SGD momentum (adam has its own moment estimates and refuses any other value than this default)."""
    l2: float = 1e-4
    """c of the loss's c ||theta||^2, applied as the optimizer's weight decay 2c."""
    max_grad_norm: float = 0.0
    """Clip the gradient's global norm to this (0: no clipping)."""
    arena_interval: int = 1
    """Iterations between arenas of the trained net against the best one."""
    arena_games: int = 400
    """Games of each arena, each net moving first in half (AlphaGo Zero: 400); 0: no arena, self-play always uses
    the latest net (AlphaZero)."""
    arena_threshold: float = 0.55
    """Score (win 1, draw 1/2) the trained net needs against the best for it to become the best."""
    arena_simulations: int = 0
    """Simulations per move in the arena (0: simulations)."""

    CHECKS: ClassVar[dict[str, Constraint]] = {
        "simulations": COUNT, "c_init": POSITIVE, "c_base": POSITIVE, "dirichlet_alpha": POSITIVE,
        "dirichlet_epsilon": UNIT, "temperature_moves": NON_NEGATIVE, "games_per_iteration": COUNT,
        "updates_per_iteration": COUNT, "buffer_size": COUNT, "batch_size": COUNT, "channels": COUNT,
        "blocks": COUNT, "value_hidden": COUNT, "optimizer": OneOf(OPTIMIZERS), "learning_rate": POSITIVE,
        "momentum": UNIT, "l2": NON_NEGATIVE, "max_grad_norm": NON_NEGATIVE, "arena_interval": COUNT,
        "arena_games": NON_NEGATIVE, "arena_threshold": UNIT, "arena_simulations": NON_NEGATIVE,
    }

    def __post_init__(self) -> None:
        check(self)
        if self.optimizer == "adam" and self.momentum != 0.9:
            raise UserError("--momentum is SGD's: adam has its own moment estimates; drop --momentum or use "
                            "--optimizer sgd")
        if self.arena_games % 2:
            raise UserError(f"--arena-games {self.arena_games} is odd: each net moves first in half the games, so "
                            "pass an even number")


PRESETS: dict[str, dict[str, Any]] = {
    # OpenSpiel's AlphaZero example for Connect Four (open_spiel/python/examples/alpha_zero.py): uct_c 2, Dirichlet
    # alpha 1 and epsilon 0.25, temperature drop after 10 moves, Adam 1e-3 with weight decay 1e-4, batch 1024,
    # replay 2^16; its 300 simulations and 10 x 128 tower are cut to fit a CPU: 100 simulations, 4 x 32
    # (benchmarks/alphazero_connect_four.py). No arena, as AlphaZero and OpenSpiel: in a 10-minute run the arena kept
    # the untrained net and took a third of the time (benchmarks/RESULTS.md); --arena-games N turns it on.
    "connect_four": {"simulations": 100, "c_init": 2.0, "dirichlet_alpha": 1.0, "temperature_moves": 10,
                     "games_per_iteration": 32, "updates_per_iteration": 40, "buffer_size": 65_536,
                     "batch_size": 256, "channels": 32, "blocks": 4, "value_hidden": 64, "optimizer": "adam",
                     "learning_rate": 1e-3, "l2": 5e-5, "arena_games": 0, "arena_interval": 5,
                     "total_steps": 4_000},  # 100 iterations: hours on one CPU core
    # OpenSpiel's tic-tac-toe example (uct_c 1, 20 simulations, temperature drop at 4, lr 0.01, batch 128), with
    # alpha 1 and a small tower: learns to draw against perfect play in a few minutes.
    "tic_tac_toe": {"simulations": 25, "c_init": 1.0, "dirichlet_alpha": 1.0, "temperature_moves": 4,
                    "games_per_iteration": 32, "updates_per_iteration": 20, "buffer_size": 16_384,
                    "batch_size": 128, "channels": 32, "blocks": 2, "value_hidden": 32, "optimizer": "adam",
                    "learning_rate": 1e-2, "l2": 5e-5, "arena_games": 0, "arena_interval": 5,
                    "total_steps": 2_000},
}
"""Game -> config changes and the run's ``total_steps`` (updates)."""
RUN_KEYS = ("total_steps",)


class NetEvaluator:
    """Leaf evaluation by a policy/value net: the move probabilities (softmax of the logits; the search reads the
    legal ones) and the value for the player to move, for a batch of states in one forward pass."""

    def __init__(self, net: PolicyValueNet, device: torch.device):
        self.net, self.device = net, device

    @torch.no_grad()
    def __call__(self, states: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        self.net.eval()  # batch statistics of a single leaf would be meaningless
        obs = torch.from_numpy(np.stack([encode(state) for state in states])).to(self.device)
        logits, values = self.net(obs)
        return torch.softmax(logits, -1).cpu().numpy(), values.cpu().numpy()


class AlphaZero:
    """The learner: ``net`` (trained), ``best_net`` (plays self-play; the same net without an arena) and the
    optimizer. ``update`` is one gradient step of the AlphaZero loss."""

    def __init__(self, config: AlphaZeroConfig, obs_shape: tuple[int, int, int], num_actions: int,
                 device: str | torch.device):
        self.config, self.device = config, torch.device(device)
        self.obs_shape, self.num_actions = tuple(obs_shape), num_actions
        self.net = PolicyValueNet(obs_shape, num_actions, config.channels, config.blocks,
                                  config.value_hidden).to(self.device)
        self.best_net = copy.deepcopy(self.net).eval()
        params, decay = self.net.parameters(), 2 * config.l2  # the gradient of c ||theta||^2 is 2c theta
        if config.optimizer == "adam":
            self.optimizer = make_adam(params, config.learning_rate, self.device, weight_decay=decay)
        else:
            self.optimizer = torch.optim.SGD(params, lr=config.learning_rate, momentum=config.momentum,
                                             weight_decay=decay)
        self.updates = 0
        self.promotions = 0

    @property
    def self_play_net(self) -> PolicyValueNet:
        return self.best_net if self.config.arena_games else self.net

    def mcts(self, net: PolicyValueNet, simulations: int = 0, seed: int | None = None) -> MCTS:
        """A search guided by ``net`` with the config's constants (``simulations`` 0: the config's)."""
        c = self.config
        return MCTS(NetEvaluator(net, self.device), simulations or c.simulations, "puct", c.c_init, c.c_base,
                    c.dirichlet_alpha, c.dirichlet_epsilon, seed)

    def promote(self) -> None:
        """The trained net won its arena: it plays self-play from now on."""
        self.best_net.load_state_dict(self.net.state_dict())
        self.promotions += 1

    def update(self, batch: PositionBatch) -> dict[str, float]:
        self.net.train()
        logits, value = self.net(batch.obs)
        value_loss = F.mse_loss(value, batch.outcome)
        policy_loss = -(batch.policy * F.log_softmax(logits, dim=-1)).sum(-1).mean()
        loss = value_loss + policy_loss  # + c ||theta||^2: the optimizer's weight decay
        grad_norm = optimizer_step(self.optimizer, loss, self.net.parameters(), self.config.max_grad_norm)
        self.updates += 1
        return {"losses/value_loss": value_loss.item(), "losses/policy_loss": policy_loss.item(),
                "losses/grad_norm": grad_norm, "charts/promotions": float(self.promotions), **batch.arena}

    def state_dict(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "best_net": self.best_net.state_dict(),
                "optimizer": self.optimizer.state_dict(), "updates": self.updates, "promotions": self.promotions}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.best_net.load_state_dict(state["best_net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates, self.promotions = int(state["updates"]), int(state["promotions"])
