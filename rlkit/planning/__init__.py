"""Planning for board games: the games (OpenSpiel's), Monte Carlo tree search, and matches between players."""

from rlkit.planning.arena import MCTSPlayer, Player, RandomPlayer, Record, play_games, win_draw_loss
from rlkit.planning.games import GAMES, GameInfo, encode, load_game
from rlkit.planning.mcts import MCTS, Node, RolloutEvaluator, Tree, sample_action, visit_distribution

__all__ = ["GAMES", "GameInfo", "MCTS", "MCTSPlayer", "Node", "Player", "RandomPlayer", "Record", "RolloutEvaluator",
           "Tree", "encode", "load_game", "play_games", "sample_action", "visit_distribution", "win_draw_loss"]
