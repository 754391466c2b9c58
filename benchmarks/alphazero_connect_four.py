"""AlphaZero on Connect Four within a CPU budget: train with the connect_four preset until the budget is spent,
then report win/draw/loss of the trained player against a uniformly random player and against pure MCTS (UCT,
c = 2, one random rollout per simulation) at 200 and 1,000 simulations per move.

    OMP_NUM_THREADS=1 python benchmarks/alphazero_connect_four.py --minutes 120 --run-dir runs/az_c4

The budget is wall-clock training time on one process with ``--threads`` torch threads (self-play, arenas and
updates; no evaluations during training, so all of it goes to learning); the run stops at the first update past it,
saved, and can be continued with ``train.py --resume``. The final evaluation plays ``--games`` games per opponent,
each side moving first in half, and is not counted in the budget. Extra arguments after ``--`` go to train.py
(``-- --simulations 50``). A smoke run: ``--minutes 1 --games 2``. Prints the table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import evaluate  # noqa: E402
from rlkit import Callback  # noqa: E402
from rlkit.cli.train import prepare  # noqa: E402
from rlkit.loop import Loop  # noqa: E402
from rlkit.runlock import RunLock  # noqa: E402


class TimeBudget(Callback):
    """Stop the run once its training time (carried over a resume) passes ``seconds``."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def on_step(self, loop: Loop, step: int) -> bool:
        return loop.wall_time + loop._elapsed() < self.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=120.0, help="training budget (default: 120)")
    parser.add_argument("--run-dir", type=Path, default=Path("runs/alphazero_connect_four"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--games", type=int, default=100, help="evaluation games per opponent (default: 100)")
    parser.add_argument("--mcts", type=int, nargs="+", default=[200, 1_000],
                        help="pure-MCTS opponents' simulations per move (default: 200 1000)")
    parser.add_argument("--latest", action="store_true",
                        help="evaluate the latest trained net, not the best one (the arena's winner)")
    parser.add_argument("extra", nargs="*", help="more train.py flags, after --")
    args = parser.parse_args()

    argv = ["--agent", "alphazero", "--env", "connect_four", "--total-steps", "10000000", "--seed", str(args.seed),
            "--threads", str(args.threads), "--eval-games", "0", "--run-dir", str(args.run_dir), "--no-progress",
            *args.extra]
    run = prepare(argv)
    lock = RunLock(run.run_dir)
    try:
        loop = run.job.build(run.settings, run.config, run.run_dir)
        loop.callbacks.append(TimeBudget(60 * args.minutes))
        loop.run()
    finally:
        lock.release()
    source = loop.source
    trained = {"updates": source.steps, "iterations": source.iterations, "self_play_games": source.episodes.count,
               "positions": source.replay.added, "promotions": loop.learner.promotions,
               "training_seconds": round(loop.wall_time)}
    start = time.perf_counter()
    result = evaluate.main([str(args.run_dir), "--json", "--games", str(args.games), "--seed", "12345",
                            "--mcts-simulations", *map(str, args.mcts), *(["--latest"] if args.latest else [])])
    eval_seconds = round(time.perf_counter() - start)
    print(f"\nAlphaZero on Connect Four, {args.minutes:g} min of training ({trained['training_seconds']} s): "
          f"{trained['updates']} updates, {trained['self_play_games']} self-play games, "
          f"{trained['promotions']} promotions; the {result['net']} net, {result['simulations']} simulations per move")
    print(f"{'opponent':<24} {'win':>6} {'draw':>6} {'loss':>6}   ({args.games} games each, {eval_seconds} s)")
    for name, wdl in result["opponents"].items():
        label = "random" if name == "random" else f"pure MCTS {name[4:]} sims"
        print(f"{label:<24} {100 * wdl['win']:>5.0f}% {100 * wdl['draw']:>5.0f}% {100 * wdl['loss']:>5.0f}%")
    print(json.dumps({"minutes": args.minutes, **trained, "evaluation": result, "eval_seconds": eval_seconds}))


if __name__ == "__main__":
    main()
