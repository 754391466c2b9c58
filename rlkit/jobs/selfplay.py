"""Self-play runs of tree-search agents on board games (``--agent alphazero --env connect_four``): the learner, the
self-play source and the loop; evaluation as win/draw/loss against a random player and against pure MCTS with
random rollouts at stated simulation counts."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlkit.agents import SELF_PLAY_AGENTS as AGENTS
from rlkit.agents.alphazero import PRESETS, RUN_KEYS, AlphaZero, AlphaZeroConfig
from rlkit.config import COUNT, NON_NEGATIVE, require_all, whole_number
from rlkit.distributed import check_allreduce, launched_by_torchrun
from rlkit.errors import UserError
from rlkit.jobs.base import Job, load_learner, warn_non_finite_weights
from rlkit.loop import Loop, LoopConfig
from rlkit.planning.arena import MCTSPlayer, RandomPlayer, play_games, win_draw_loss
from rlkit.planning.games import GAMES, input_shape, load_game
from rlkit.planning.mcts import MCTS, RolloutEvaluator
from rlkit.runtime import check_run_dir, pick_device, prepare_process, seed_everything
from rlkit.sources.selfplay import SelfPlaySource

EVAL_SEED_OFFSET = 10_000
"""Evaluations during training are seeded ``seed + 10_000``; evaluate.py --seed of that value repeats them."""
PURE_MCTS_C = 2.0
"""UCT's exploration constant for the pure-MCTS opponent (OpenSpiel's mcts example: uct_c 2)."""
EVAL_MCTS = {"connect_four": (200, 1_000), "tic_tac_toe": (100,)}
"""Simulation counts of the pure-MCTS opponents each game is evaluated against by default."""
DEFAULT_MCTS_HELP = "; ".join(f"{game} " + " ".join(map(str, counts)) for game, counts in EVAL_MCTS.items())


@dataclass
class SelfPlaySettings:
    """What a self-play run needs beyond the agent's config."""

    agent: str
    env: str
    """The game (:data:`rlkit.planning.GAMES`)."""
    total_steps: int
    """Training updates of the whole run."""
    seed: int = 1
    device: str = "auto"
    eval_interval: int = 0
    """Updates between evaluations (0: a tenth of the run)."""
    eval_games: int = 20
    """Games against each opponent per evaluation, moving first in half (0: no evaluation)."""
    eval_simulations: int = 0
    """The trained player's simulations per move in evaluation (0: the config's)."""
    eval_mcts: tuple[int, ...] = ()
    """Simulations per move of each pure-MCTS opponent (one random rollout per simulation)."""
    checkpoint_interval: int = 0
    """Updates between checkpoints (0: every iteration)."""
    progress: bool = True
    threads: int = 0
    precision: str = "fp32"
    """What the updates compute in (:data:`rlkit.runtime.PRECISIONS`, ``--precision``)."""
    allreduce: str = "builtin"
    """Kept for the shared run flags; a self-play run is one process."""

    def __post_init__(self) -> None:
        check_allreduce(self.allreduce)
        self.eval_mcts = tuple(self.eval_mcts)


def check_names(agent: str | None, env: str | None) -> None:
    if agent not in AGENTS:
        raise UserError(f"unknown self-play agent {agent!r}: use {', '.join(AGENTS)}")
    if env is None:
        raise UserError(f"--env names the game {agent} plays: {', '.join(GAMES)}")
    if env not in PRESETS:
        load_game(env)  # an unknown name: one line with the closest names
        raise UserError(f"{env} has no preset: use {', '.join(PRESETS)}")


def evaluate_player(learner: AlphaZero, game: Any, games: int, simulations: int, mcts: tuple[int, ...],
                    seed: int, latest: bool = False) -> dict[str, float]:
    """Win/draw/loss shares of the run's player (``learner.self_play_net``, the best net, or with ``latest`` the
    trained one, searching ``simulations`` per move, most visited move, no noise) against a uniformly random player
    and against pure MCTS at each count in ``mcts``; ``score`` is the mean score (win 1, draw 1/2) over all
    opponents. Repeatable: seeded by ``seed``."""
    num_actions = game.num_distinct_actions()
    opponents = {"random": RandomPlayer(seed)}
    for n in mcts:
        opponents[f"mcts{n}"] = MCTSPlayer(MCTS(RolloutEvaluator(num_actions, 1, seed + n), n, "uct", PURE_MCTS_C))
    metrics, scores = {}, []
    for name, opponent in opponents.items():
        player = MCTSPlayer(learner.mcts(learner.net if latest else learner.self_play_net, simulations, seed))
        result = win_draw_loss(play_games(game, [player, opponent], games, learner.config.reuse_tree))
        metrics.update({f"eval/{name}_{key}": value for key, value in result.items() if key != "score"})
        scores.append(result["score"])
    return {**metrics, "eval/score": sum(scores) / len(scores)}


class SelfPlayJob(Job):
    kind = "selfplay"
    settings_class = SelfPlaySettings
    resume_overrides = ("total_steps", "eval_interval", "checkpoint_interval")
    unit = "updates"
    eval_interval_default = "a tenth of the run"
    best_metric = "eval/score"

    def add_flags(self, parser: argparse.ArgumentParser, run: argparse._ArgumentGroup) -> None:
        agents = "; ".join(f"{name}: {text}" for name, text in AGENTS.items())
        parser.epilog = f"agents: {agents}. games: " + "; ".join(f"{name}: {info.help}" for name, info in GAMES.items())
        run.add_argument("--agent", help=f"self-play agent: {', '.join(AGENTS)}")
        run.add_argument("--env", help=f"the board game: {', '.join(GAMES)}")
        run.add_argument("--total-steps", type=whole_number, help="training updates of the run (default: the game's preset)")
        run.add_argument("--eval-games", type=whole_number,
                         help="games against each opponent per evaluation, each side first in half (default: 20; "
                              "0: no evaluation)")
        run.add_argument("--eval-simulations", type=whole_number,
                         help="the trained player's simulations per move in evaluation (default: --simulations)")
        run.add_argument("--eval-mcts-simulations", type=whole_number, nargs="+", dest="eval_mcts", metavar="N",
                         help="pure-MCTS opponents, one per count of simulations per move (random rollouts) "
                              f"(default: {DEFAULT_MCTS_HELP})")

    def config_class(self, names: dict[str, Any]) -> type:
        return AlphaZeroConfig

    def hyperparams(self, names: dict[str, Any]) -> Any:
        if names.get("config_files"):
            raise UserError(f"--config files hold gym agents' values; a self-play run (--agent "
                            f"{names.get('agent')}) takes its values from the game's preset and flags: drop --config")
        return super().hyperparams(names)

    def preset(self, names: dict[str, Any]) -> AlphaZeroConfig | None:
        if not names.get("env"):
            return None
        check_names(names.get("agent"), names["env"])
        return AlphaZeroConfig(**{k: v for k, v in PRESETS[names["env"]].items() if k not in RUN_KEYS})

    def new_settings(self, args: argparse.Namespace) -> SelfPlaySettings:
        check_names(args.agent, args.env)
        for flag, value in (("--distributed", args.distributed), ("--allreduce", args.allreduce)):
            if value is not None:  # both choose how processes under torchrun share work; self-play has one
                raise UserError(f"{flag} sets how processes under torchrun share the work, and {args.agent} "
                                f"self-play runs in one process: drop {flag}")
        require_all((flag, value, bound) for flag, value, bound in (
            ("--total-steps", args.total_steps, COUNT), ("--seed", args.seed, NON_NEGATIVE),
            ("--eval-interval", args.eval_interval, NON_NEGATIVE), ("--eval-games", args.eval_games, NON_NEGATIVE),
            ("--eval-simulations", args.eval_simulations, NON_NEGATIVE),
            ("--eval-mcts-simulations", args.eval_mcts, COUNT),
            ("--checkpoint-interval", args.checkpoint_interval, NON_NEGATIVE),
            ("--threads", args.threads, NON_NEGATIVE)) if value is not None)
        pick_device(args.device or "auto")
        check_run_dir(args.run_dir)
        return SelfPlaySettings(
            agent=args.agent, env=args.env,
            total_steps=PRESETS[args.env]["total_steps"] if args.total_steps is None else args.total_steps,
            seed=1 if args.seed is None else args.seed, device=args.device or "auto",
            eval_interval=args.eval_interval or 0, eval_games=20 if args.eval_games is None else args.eval_games,
            eval_simulations=args.eval_simulations or 0, eval_mcts=tuple(args.eval_mcts or EVAL_MCTS[args.env]),
            checkpoint_interval=args.checkpoint_interval or 0, progress=not args.no_progress,
            threads=args.threads or 0, precision=args.precision or "fp32", allreduce=args.allreduce or "builtin")

    def resume(self, settings: SelfPlaySettings, args: argparse.Namespace, steps_taken: int) -> None:
        if settings.total_steps < steps_taken:
            raise UserError(f"--total-steps {settings.total_steps} is below the {steps_taken} updates the run has "
                            "taken: pass a larger budget to extend it")

    def run_name(self, settings: SelfPlaySettings) -> str:
        return f"{settings.env}__{settings.agent}__{settings.seed}"

    def describe(self, settings: SelfPlaySettings, loop: Loop) -> str:
        return f"{settings.agent} on {settings.env} for {settings.total_steps} updates"

    def learner(self, settings: SelfPlaySettings, config: AlphaZeroConfig) -> tuple[AlphaZero, Any]:
        check_names(settings.agent, settings.env)
        game = load_game(settings.env)
        return AlphaZero(config, input_shape(game), game.num_distinct_actions(), pick_device(settings.device)), game

    def build(self, settings: SelfPlaySettings, config: AlphaZeroConfig, run_dir: Path,
              resume: dict[str, Any] | None = None) -> Loop:
        if launched_by_torchrun():
            raise UserError(f"{settings.agent} self-play runs in one process: start it without torchrun")
        prepare_process(settings.threads, large_convolutions=False)
        seed_everything(settings.seed)
        learner, game = self.learner(settings, config)
        source = SelfPlaySource(learner, game, settings.seed)
        total, iteration = settings.total_steps, config.updates_per_iteration
        eval_interval = settings.eval_interval or (max(total // 10, iteration) if 2 * iteration < total else 0)

        def evaluate() -> dict[str, float]:
            return evaluate_player(learner, game, settings.eval_games, settings.eval_simulations, settings.eval_mcts,
                                   settings.seed + EVAL_SEED_OFFSET)

        return self.make_loop(learner, source, settings, config, run_dir,
                              LoopConfig(total, eval_interval, settings.checkpoint_interval or iteration,
                                         log_interval=iteration, progress=settings.progress),
                              resume, evaluate if settings.eval_games > 0 else None)

    def rebuild(self, checkpoint: dict[str, Any], device: str = "auto", **overrides: Any
                ) -> tuple[AlphaZero, SelfPlaySettings, Any]:
        """The trained learner, its run settings and the game."""
        settings = self.settings_from(checkpoint)
        settings.device = device
        learner, game = self.learner(settings, self.config_from(checkpoint, settings))
        load_learner(learner, checkpoint)
        return learner, settings, game

    def add_report_flags(self, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("self-play (board games)")
        group.add_argument("--games", type=whole_number, default=20,
                           help="games against each opponent, the trained player moving first in half (default: 20)")
        group.add_argument("--simulations", type=whole_number, default=0,
                           help="the trained player's simulations per move (default: the run's evaluation setting)")
        group.add_argument("--mcts-simulations", type=whole_number, nargs="+", metavar="N",
                           help="pure-MCTS opponents' simulations per move, one opponent per count (default: the "
                                "run's)")
        group.add_argument("--latest", action="store_true",
                           help="play the latest trained net instead of the best one (they differ where the last "
                                "arena kept the older net)")

    def report(self, checkpoint: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
        require_all([("--games", args.games, COUNT), ("--simulations", args.simulations, NON_NEGATIVE),
                     *([("--mcts-simulations", args.mcts_simulations, COUNT)] if args.mcts_simulations else [])])
        learner, settings, game = self.rebuild(checkpoint, args.device)
        warn_non_finite_weights(checkpoint)
        simulations = args.simulations or settings.eval_simulations or learner.config.simulations
        mcts = tuple(args.mcts_simulations or settings.eval_mcts)
        metrics = evaluate_player(learner, game, args.games, simulations, mcts, args.seed, args.latest)
        opponents = ["random", *(f"mcts{n}" for n in mcts)]
        result = {"agent": settings.agent, "env": settings.env, "steps": checkpoint["loop"]["steps"],
                  "games": args.games, "simulations": simulations, "net": "latest" if args.latest else "best",
                  "score": metrics["eval/score"],
                  "opponents": {name: {key: metrics[f"eval/{name}_{key}"] for key in ("win", "draw", "loss")}
                                for name in opponents}}
        if args.json:
            print(json.dumps(result))
        else:
            print(f"{settings.agent} on {settings.env} after {result['steps']} updates ({result['net']} net), "
                  f"{simulations} simulations per move, {args.games} games per opponent:")
            for name, wdl in result["opponents"].items():
                what = "random player" if name == "random" else f"pure MCTS, {name[4:]} simulations"
                print(f"  vs {what}: win {100 * wdl['win']:.0f}%, draw {100 * wdl['draw']:.0f}%, "
                      f"loss {100 * wdl['loss']:.0f}%")
        return result


__all__ = ["AGENTS", "SelfPlayJob", "SelfPlaySettings", "evaluate_player"]
