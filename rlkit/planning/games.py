"""The board games self-play runs on: OpenSpiel's implementations (``pyspiel``), named by ``--env``.

OpenSpiel is an optional dependency (``pip install "rlkit[games]"``): everything else in rlkit works without it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

import numpy as np

from rlkit.errors import UserError

try:
    import pyspiel
except ImportError:  # the games extra is not installed: load_game says how to get it
    pyspiel = None


@dataclass(frozen=True)
class GameInfo:
    """A game ``--env`` can name."""

    name: str
    pyspiel_name: str
    """The name OpenSpiel loads it by (``pyspiel.load_game``)."""
    help: str


GAMES: dict[str, GameInfo] = {info.name: info for info in (
    GameInfo("connect_four", "connect_four", "Connect Four, 6 rows x 7 columns, four in a row wins"),
    GameInfo("tic_tac_toe", "tic_tac_toe", "tic-tac-toe, 3 x 3 (small and quick: for tests)"),
)}


def load_game(name: str) -> Any:
    """The OpenSpiel game for ``name``; an unknown name, or OpenSpiel missing, is a :class:`UserError`."""
    if name not in GAMES:
        close = difflib.get_close_matches(name, GAMES, n=2, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else f"choose one of {', '.join(GAMES)}"
        raise UserError(f"unknown game {name!r} for a self-play run: {hint}")
    if pyspiel is None:
        raise UserError('board games come from OpenSpiel, which is not installed: pip install "rlkit[games]" '
                        "(open_spiel==2.0.2)")
    game = pyspiel.load_game(GAMES[name].pyspiel_name)
    kind = game.get_type()
    # what the search assumes: two players alternating, no chance, no hidden information, one player's gain is
    # the other's loss (a leaf's value v for the player to move is -v for the other)
    if (game.num_players() != 2 or kind.utility != pyspiel.GameType.Utility.ZERO_SUM
            or kind.information != pyspiel.GameType.Information.PERFECT_INFORMATION
            or kind.chance_mode != pyspiel.GameType.ChanceMode.DETERMINISTIC
            or len(game.observation_tensor_shape()) != 3):
        raise UserError(f"{name} is not a two-player zero-sum deterministic board game: pick one of {', '.join(GAMES)}")
    return game


def input_shape(game: Any) -> tuple[int, int, int]:
    """The net's input ``(C + 1, H, W)``: the game's observation planes and one plane saying who is to move."""
    channels, height, width = game.observation_tensor_shape()
    return channels + 1, height, width


def encode(state: Any) -> np.ndarray:
    """The net's input for ``state``: OpenSpiel's ``observation_tensor`` of the player to move, shaped as the game
    says, and a plane of that player's index. The board planes are the same for both players in these games (a
    plane per cell state: empty, or a piece of either player), so without the extra plane the net would have to
    count pieces to know whose turn it is."""
    player = state.current_player()
    shape = state.get_game().observation_tensor_shape()
    planes = np.asarray(state.observation_tensor(player), dtype=np.float32).reshape(shape)
    return np.concatenate([planes, np.full((1, *shape[1:]), float(player), dtype=np.float32)])
