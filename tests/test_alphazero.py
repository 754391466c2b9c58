"""AlphaZero on OpenSpiel's tic-tac-toe: the tree search on positions with a known answer, the backup's signs,
tree reuse, the loss against hand-computed values, self-play replay, the arena, and runs through train.py and
evaluate.py (checkpoint, resume, damaged files)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pyspiel = pytest.importorskip("pyspiel")

import evaluate  # noqa: E402
import rlkit  # noqa: E402
import train  # noqa: E402
from rlkit.agents.alphazero import PRESETS, AlphaZero, AlphaZeroConfig  # noqa: E402
from rlkit.buffers.positions import PositionBatch, PositionReplay  # noqa: E402
from rlkit.checkpoint import save_checkpoint  # noqa: E402
from rlkit.cli import runs  # noqa: E402
from rlkit.config import unchecked_numbers  # noqa: E402
from rlkit.errors import UserError  # noqa: E402
from rlkit.jobs import JOBS, read_checkpoint, select_job  # noqa: E402
from rlkit.planning import (MCTS, MCTSPlayer, Node, RandomPlayer, RolloutEvaluator, Tree, encode,  # noqa: E402
                            load_game, play_games, sample_action, visit_distribution, win_draw_loss)
from rlkit.planning.games import GAMES, input_shape  # noqa: E402
from rlkit.planning.mcts import backup  # noqa: E402
from rlkit.sources.selfplay import SelfPlaySource  # noqa: E402

GAME = load_game("tic_tac_toe")


def position(*moves: int):
    """Tic-tac-toe after ``moves`` (cells 0-8 row by row; x moves first)."""
    state = GAME.new_initial_state()
    for move in moves:
        state.apply_action(move)
    return state


class Constant:
    """Uniform priors and the same value for the player to move at every leaf."""

    def __init__(self, value: float):
        self.value = value

    def __call__(self, states):
        return np.full((len(states), 9), 1 / 9, dtype=np.float32), np.full(len(states), self.value, np.float32)


def searched(state, simulations: int, rule: str = "puct", seed: int = 0) -> Tree:
    tree = Tree(state)
    c = 2.0 if rule == "uct" else 1.25
    MCTS(RolloutEvaluator(9, 1, seed), simulations, rule, c_init=c, seed=seed).search([tree])
    return tree


def most_visited(tree: Tree) -> int:
    return sample_action(tree.root, 0.0, np.random.default_rng(0))


# ---------------------------------------------------------------------------------------------------- search
@pytest.mark.parametrize("rule", ["puct", "uct"])
def test_search_finds_the_win_in_one(rule):
    # x: 0 1, o: 3 4; x to move wins at 2; 5 only blocks o's row, any other move loses to it
    state = position(0, 3, 1, 4)
    for seed in range(3):
        assert most_visited(searched(state, 30, rule, seed)) == 2


@pytest.mark.parametrize("rule", ["puct", "uct"])
def test_search_finds_the_forced_block(rule):
    # x: 0 1, o: 4; o to move must block at 2 or lose at once
    state = position(0, 4, 1)
    for seed in range(3):
        assert most_visited(searched(state, 100, rule, seed)) == 2


def test_visit_counts_sum_to_the_simulations():
    tree = searched(position(0, 4), 37)
    children = tree.root.children
    assert sorted(children) == [1, 2, 3, 5, 6, 7, 8]
    assert sum(child.visits for child in children.values()) == 37
    assert tree.root.visits == 38  # its own evaluation, then one visit per simulation
    pi = visit_distribution(tree.root, 9)
    assert pi.sum() == pytest.approx(1) and pi[0] == pi[4] == 0


def test_backup_alternates_signs():
    path = [Node(mover=-1), Node(mover=0), Node(mover=1), Node(mover=0)]
    backup(path, (1.0, -1.0))  # player 0 won
    assert [node.value_sum for node in path] == [0.0, 1.0, -1.0, 1.0]
    assert [node.visits for node in path] == [1, 1, 1, 1]


def test_a_leaf_value_is_backed_up_from_the_movers_side():
    """The evaluator says +0.5 for the player to move at every leaf. Every node then holds, from the side of the
    player who moved into it, -0.5 for its own evaluation (the other player is to move there), and for each
    evaluation below it -0.5 or +0.5 as the player to move there is the other one or that same player: the signs
    alternate with depth."""
    tree = Tree(position())
    MCTS(Constant(0.5), 1).search([tree])
    child = tree.root.children[0]  # all priors equal: the first move
    assert child.visits == 1 and child.mover == 0 and child.value_sum == pytest.approx(-0.5)
    tree = Tree(position())
    MCTS(Constant(0.5), 60).search([tree])

    def expected(node: Node, side: int) -> float:
        if node.visits == 0 or node.returns is not None:  # never evaluated; or each visit is the game's end
            return node.visits * (node.returns or (0, 0))[side]
        own = 0.5 if 1 - node.mover == side else -0.5
        return own + sum(expected(child, side) for child in node.children.values())

    nodes, stack = [], list(tree.root.children.values())
    while stack:
        nodes.append(stack.pop())
        stack.extend(nodes[-1].children.values())
    deep = [node for node in nodes if node.children and any(c.children for c in node.children.values())]
    assert deep  # the check reaches nodes with grandchildren
    for node in nodes:
        assert node.value_sum == pytest.approx(expected(node, node.mover))


def test_a_terminal_leaf_backs_up_the_game_outcome():
    tree = searched(position(0, 3, 1, 4), 30)
    win = tree.root.children[2]
    assert win.returns == (1.0, -1.0) and win.value() == 1.0


def test_tree_reuse_keeps_the_subtree():
    tree = searched(position(), 60)
    action = most_visited(tree)
    kept = tree.root.children[action]
    visits, grandchildren = kept.visits, dict(kept.children)
    tree.advance(action)
    assert tree.root is kept and tree.root.visits == visits and tree.root.children == grandchildren
    MCTS(RolloutEvaluator(9, 1, 0), 20).search([tree])
    assert sum(child.visits for child in tree.root.children.values()) == visits - 1 + 20
    fresh = Tree(position(), reuse=False)
    MCTS(RolloutEvaluator(9, 1, 0), 20).search([fresh])
    fresh.advance(4)
    assert fresh.root.visits == 0 and not fresh.root.children and fresh.root.mover == 0


def test_dirichlet_noise_only_when_exploring():
    quiet, noisy = Tree(position()), Tree(position())
    MCTS(Constant(0.0), 1, seed=0).search([quiet])
    MCTS(Constant(0.0), 1, seed=0, dirichlet_epsilon=0.25).search([noisy], explore=True)
    assert all(child.prior == pytest.approx(1 / 9) for child in quiet.root.children.values())
    priors = np.array([child.prior for child in noisy.root.children.values()])
    assert priors.sum() == pytest.approx(1) and priors.min() >= 0.75 / 9 and not np.allclose(priors, 1 / 9)


def test_temperature_one_samples_in_proportion_to_visits():
    root = Node()
    for action, visits in ((0, 1), (1, 3)):
        root.children[action] = Node()
        root.children[action].visits = visits
    rng = np.random.default_rng(0)
    draws = [sample_action(root, 1.0, rng) for _ in range(4000)]
    assert np.mean(draws) == pytest.approx(0.75, abs=0.03)
    assert sample_action(root, 0.0, rng) == 1


def test_matches_alternate_who_moves_first_and_score():
    records = play_games(GAME, [MCTSPlayer(MCTS(RolloutEvaluator(9, 1, 0), 50, "uct", 2.0)), RandomPlayer(0)], 6)
    assert [record.first for record in records] == [0, 1, 0, 1, 0, 1]
    result = win_draw_loss(records)
    assert result["win"] + result["draw"] + result["loss"] == pytest.approx(1)
    assert result["score"] == pytest.approx(result["win"] + result["draw"] / 2) and result["loss"] == 0


def test_encode_adds_the_player_to_move():
    planes = encode(position(4))  # o to move
    assert planes.shape == input_shape(GAME) == (4, 3, 3)
    # OpenSpiel's planes: empty, o, x
    assert (planes[-1] == 1).all() and planes[0, 1, 1] == 0 and planes[2, 1, 1] == 1 and planes[0].sum() == 8
    assert (encode(position())[-1] == 0).all()


# ---------------------------------------------------------------------------------------------------- learning
TINY = {"simulations": 8, "games_per_iteration": 4, "updates_per_iteration": 3, "buffer_size": 64, "batch_size": 16,
        "channels": 8, "blocks": 1, "value_hidden": 8, "optimizer": "adam", "learning_rate": 1e-3,
        "arena_games": 2, "arena_interval": 1}


def tiny_learner(**changes) -> AlphaZero:
    torch.manual_seed(0)
    return AlphaZero(AlphaZeroConfig(**{**TINY, **changes}), input_shape(GAME), 9, "cpu")


def test_update_is_the_alphazero_loss():
    learner = tiny_learner(l2=1e-4)
    obs = torch.from_numpy(np.stack([encode(position()), encode(position(4))]))
    policy = torch.tensor([[1.0] + [0.0] * 8, [0.5, 0.5] + [0.0] * 7])
    outcome = torch.tensor([1.0, -1.0])
    learner.net.train()
    logits, value = learner.net(obs)
    log_p = F.log_softmax(logits, -1)
    expected_value = ((outcome - value) ** 2).mean().item()
    expected_policy = -(log_p[0, 0] + 0.5 * log_p[1, 0] + 0.5 * log_p[1, 1]).item() / 2
    metrics = learner.update(PositionBatch(obs, policy, outcome, {}))
    assert metrics["losses/value_loss"] == pytest.approx(expected_value, rel=1e-5)
    assert metrics["losses/policy_loss"] == pytest.approx(expected_policy, rel=1e-5)
    assert learner.optimizer.param_groups[0]["weight_decay"] == pytest.approx(2e-4)  # grad of c|theta|^2


def test_replay_keeps_the_newest_positions_and_round_trips():
    replay = PositionReplay(3, (1, 1, 1), 2, torch.device("cpu"), seed=0)
    for i in range(5):
        replay.add(np.full((1, 1, 1), i), np.array([1.0, 0.0]), float(i))
    assert len(replay) == 3 and sorted(replay.outcome) == [2.0, 3.0, 4.0]
    copy = PositionReplay(3, (1, 1, 1), 2, torch.device("cpu"), seed=1)
    copy.load_state_dict(replay.state_dict())
    a, b = replay.sample(8), copy.sample(8)
    assert torch.equal(a.obs, b.obs) and torch.equal(a.outcome, b.outcome)
    assert set(a.outcome.tolist()) <= {2.0, 3.0, 4.0} and torch.equal(a.obs.flatten(), a.outcome)


def test_self_play_fills_replay_with_outcomes_for_the_player_to_move():
    learner = tiny_learner()
    source = SelfPlaySource(learner, GAME, seed=0)
    batch = source.next()
    games = source.pop_finished()
    assert len(games) == 4 and len(source.replay) == sum(length for _, _, length in games) >= 16
    assert source.steps == 1 and source.pending == 2 and batch.obs.shape == (16, 4, 3, 3)
    n = len(source.replay)
    np.testing.assert_allclose(source.replay.policy[:n].sum(1), 1, rtol=1e-6)
    # positions are stored game by game, in move order: x (player 0) moves at even plies
    start = 0
    for _, first_player_return, length in games:
        players = np.arange(length) % 2
        expected = np.where(players == 0, first_player_return, -first_player_return)
        np.testing.assert_array_equal(source.replay.outcome[start:start + length], expected)
        np.testing.assert_array_equal(source.replay.obs[start:start + length, -1, 0, 0], players)
        start += length


def test_the_arena_promotes_the_trained_net_only_when_it_scores_enough():
    # two equal nets playing without sampling: the two games are one game with the colours swapped, score 1/2
    learner = tiny_learner(arena_threshold=0.6, temperature_moves=0)
    assert SelfPlaySource(learner, GAME, seed=0).play_arena() == {"arena/score": 0.5, "arena/promoted": 0.0}
    assert learner.promotions == 0
    learner = tiny_learner(arena_threshold=0.5, temperature_moves=0)
    with torch.no_grad():
        for p in learner.net.parameters():
            p.add_(0.1)
    result = SelfPlaySource(learner, GAME, seed=0).play_arena()
    assert result["arena/promoted"] == float(result["arena/score"] >= 0.5) == learner.promotions
    learner = tiny_learner(arena_threshold=0.0)
    with torch.no_grad():
        for p in learner.net.parameters():
            p.add_(0.1)
    result = SelfPlaySource(learner, GAME, seed=0).play_arena()
    assert result["arena/promoted"] == 1.0 and learner.promotions == 1
    for a, b in zip(learner.net.state_dict().values(), learner.best_net.state_dict().values()):
        assert torch.equal(a, b)


def test_an_arena_is_played_every_arena_interval_iterations():
    learner = tiny_learner(arena_interval=2, arena_threshold=0.0)
    source = SelfPlaySource(learner, GAME, seed=0)
    arenas = [bool(source.next().arena) for _ in range(3 * 3)]  # 3 iterations of 3 updates
    assert arenas == [False] * 6 + [True, False, False] and learner.promotions == 1


def test_without_an_arena_self_play_uses_the_trained_net():
    learner = tiny_learner(arena_games=0)
    assert learner.self_play_net is learner.net
    assert tiny_learner().self_play_net is not tiny_learner().net


# ---------------------------------------------------------------------------------------------------- runs
FLAGS = ["--agent", "alphazero", "--env", "tic_tac_toe", "--simulations", "6", "--games-per-iteration", "4",
         "--updates-per-iteration", "4", "--batch-size", "16", "--buffer-size", "256", "--channels", "8",
         "--blocks", "1", "--value-hidden", "8", "--arena-games", "2", "--arena-interval", "1", "--eval-games", "2",
         "--eval-mcts-simulations", "5", "--no-progress", "--seed", "3"]


def run(tmp_path: Path, name: str, *extra: str) -> Path:
    run_dir = tmp_path / name
    train.main([*FLAGS, "--run-dir", str(run_dir), *extra])
    return run_dir


def evals(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in ("wall_time", "eval_seconds")}
            for line in (run_dir / "eval.jsonl").read_text().splitlines()]


def same_state(a, b) -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            same_state(a[key], b[key])
    else:
        assert a == b


def test_alphazero_selects_the_self_play_job():
    assert select_job("alphazero", None, None) is JOBS["selfplay"]
    assert select_job("dqn", None, None) is JOBS["agent"]
    with pytest.raises(UserError, match="train.py --agent alphazero --env connect_four"):
        rlkit.make("alphazero", "CartPole")


def test_every_number_field_is_checked_and_every_preset_is_valid():
    assert unchecked_numbers(AlphaZeroConfig) == []
    for game, values in PRESETS.items():
        load_game(game)
        AlphaZeroConfig(**{k: v for k, v in values.items() if k != "total_steps"})


def test_train_checkpoint_resume_and_evaluate(tmp_path, capsys):
    straight = run(tmp_path, "straight", "--total-steps", "12", "--eval-interval", "8")
    first = run(tmp_path, "resumed", "--total-steps", "6", "--eval-interval", "8")
    assert (first / "checkpoint.pt").is_file() and (first / "best.pt").is_file()
    assert read_checkpoint(first)["loop"]["steps"] == 6
    train.main(["--resume", str(first), "--total-steps", "12", "--no-progress"])
    # a resumed run continues exactly: same replay, same random draws, same weights and optimizer moments
    same_state(read_checkpoint(straight)["learner"], read_checkpoint(first)["learner"])
    same_state(read_checkpoint(straight)["source"], read_checkpoint(first)["source"])
    logged = evals(straight)
    assert [e["step"] for e in logged] == [8, 12]
    for e in logged:
        assert e["eval/random_win"] + e["eval/random_draw"] + e["eval/random_loss"] == pytest.approx(1)
        assert set(e) >= {"eval/mcts5_win", "eval/mcts5_draw", "eval/mcts5_loss", "eval/score"}
    # evaluate.py with the training evaluations' seed reports what the run logged at its end
    capsys.readouterr()
    result = evaluate.main([str(straight), "--json", "--games", "2", "--seed", str(3 + 10_000)])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result
    assert result["steps"] == 12 and result["score"] == logged[-1]["eval/score"]
    assert result["opponents"]["random"] == {key: logged[-1][f"eval/random_{key}"] for key in ("win", "draw", "loss")}
    text = evaluate.main([str(straight), "--games", "2", "--mcts-simulations", "4", "7"])
    out = capsys.readouterr().out
    assert set(text["opponents"]) == {"random", "mcts4", "mcts7"}
    assert "vs random player: win" in out and "vs pure MCTS, 7 simulations: win" in out
    rows = {row["name"]: row for row in runs.main([str(tmp_path)])}
    assert rows["straight"]["agent"] == "alphazero" and rows["straight"]["env"] == "tic_tac_toe"
    assert rows["straight"]["status"] == "finished" and rows["straight"]["last"] == logged[-1]["eval/score"]


@pytest.mark.parametrize("game", list(GAMES))
def test_every_game_trains_checkpoints_and_evaluates(game, tmp_path):
    run_dir = tmp_path / "run"
    train.main(["--agent", "alphazero", "--env", game, "--simulations", "4", "--games-per-iteration", "2",
                "--updates-per-iteration", "1", "--batch-size", "8", "--channels", "4", "--blocks", "1",
                "--total-steps", "1", "--eval-games", "2", "--eval-mcts-simulations", "3", "--no-progress",
                "--run-dir", str(run_dir)])
    assert read_checkpoint(run_dir)["loop"]["steps"] == 1 and [e["step"] for e in evals(run_dir)] == [1]
    result = evaluate.main([str(run_dir), "--json", "--games", "2"])
    assert result["env"] == game and set(result["opponents"]) == {"random", "mcts3"}


def test_a_garbled_or_strangers_checkpoint_is_one_line(tmp_path):
    good = run(tmp_path, "good", "--total-steps", "4", "--eval-games", "0")
    checkpoint = read_checkpoint(good)
    damages = [
        {"settings": {**checkpoint["settings"], "colour": "red"}},
        {"config": {**checkpoint["config"], "wings": 2}},
        {"settings": {**checkpoint["settings"], "env": "chess"}},
        {"learner": {**checkpoint["learner"], "net": {"stem.0.weight": torch.zeros(1)}}},
    ]
    for i, damage in enumerate(damages):
        save_checkpoint(tmp_path / f"bad{i}" / "checkpoint.pt", {**checkpoint, **damage})
        with pytest.raises(UserError) as error:
            evaluate.main([str(tmp_path / f"bad{i}"), "--games", "2"])
        assert "\n" not in str(error.value)
    garbled = tmp_path / "garbled"
    garbled.mkdir()
    data = bytearray((good / "checkpoint.pt").read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = b"\x00" * 64
    (garbled / "checkpoint.pt").write_bytes(bytes(data))
    with pytest.raises(UserError) as error:
        evaluate.main([str(garbled)])
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("argv, match", [
    (["--env", "tic_tac_to"], "did you mean tic_tac_toe"),
    (["--arena-games", "3"], "--arena-games 3 is odd"),
    (["--dirichlet-epsilon", "2"], "--dirichlet-epsilon must be in"),
    (["--eval-mcts-simulations", "0"], "--eval-mcts-simulations"),
    (["--optimizer", "sgd", "--learning-rate", "0"], "--learning-rate must be"),
])
def test_bad_flags_are_one_line(tmp_path, argv, match):
    with pytest.raises(UserError, match=match):
        train.main([*FLAGS, "--run-dir", str(tmp_path / "run"), *argv])
    assert not (tmp_path / "run").exists()


def test_config_files_and_changed_flags_on_resume_are_refused(tmp_path):
    with pytest.raises(UserError, match="--config"):
        train.main([*FLAGS, "--config", str(tmp_path / "x.yml"), "--run-dir", str(tmp_path / "r")])
    done = run(tmp_path, "done", "--total-steps", "4", "--eval-games", "0")
    with pytest.raises(UserError, match="--simulations 9 differs"):
        train.main(["--resume", str(done), "--simulations", "9"])
