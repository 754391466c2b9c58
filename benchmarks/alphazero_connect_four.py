"""AlphaZero on Connect Four within a CPU budget: train with the connect_four preset until the budget is spent,
then report win/draw/loss of the trained player against a uniformly random player and against pure MCTS (UCT,
c = 2, one random rollout per simulation) at 200 and 1,000 simulations per move.

    OMP_NUM_THREADS=1 python benchmarks/alphazero_connect_four.py --minutes 120 --run-dir runs/az_c4

The budget is wall-clock training time on one process with ``--threads`` torch threads (self-play, arenas and
updates; no evaluations during training, so all of it goes to learning); the run stops at the first update past it,
saved, and can be continued with ``train.py --resume``. The final evaluation plays ``--games`` games per opponent,
each side moving first in half, and is not counted in the budget. Extra arguments after ``--`` go to train.py
(``-- --simulations 50``). A smoke run: ``--minutes 1 --games 2 --snapshot-minutes 0.5 --curve-games 2``.

The curve over training: every ``--snapshot-minutes`` of training the checkpoint is copied to
``RUN_DIR/snapshots/``; after training each snapshot (and the final net) plays ``--curve-games`` games against
random and against the first ``--mcts`` opponent, written to ``RUN_DIR/curve.jsonl``. Prints the tables and one
JSON line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import evaluate  # noqa: E402
from rlkit import Callback  # noqa: E402
from rlkit.checkpoint import CHECKPOINT_NAME  # noqa: E402
from rlkit.cli.train import prepare  # noqa: E402
from rlkit.loop import Loop  # noqa: E402
from rlkit.runlock import RunLock  # noqa: E402


class TimeBudget(Callback):
    """Stop the run once its training time (carried over a resume) passes ``seconds``; every ``snapshot_seconds``
    of training, save and copy the checkpoint into ``folder`` (named by its training seconds)."""

    def __init__(self, seconds: float, snapshot_seconds: float, folder: Path):
        self.seconds, self.snapshot_seconds, self.folder = seconds, snapshot_seconds, folder

    def on_step(self, loop: Loop, step: int) -> bool:
        trained = loop.wall_time + loop._elapsed()
        if self.snapshot_seconds > 0 and trained < self.seconds:
            mark = int(trained // self.snapshot_seconds)
            target = self.folder / f"trained_{round(mark * self.snapshot_seconds):05d}s.pt"
            if mark > 0 and not target.exists() and loop.save():
                self.folder.mkdir(exist_ok=True)
                shutil.copyfile(loop.run_dir / CHECKPOINT_NAME, target)
        return trained < self.seconds


def curve(run_dir: Path, games: int, mcts: int) -> list[dict]:
    """Each snapshot's and the final net's score against random and pure MCTS, in training order."""
    rows = []
    (run_dir / "curve.jsonl").unlink(missing_ok=True)
    for path in [*sorted((run_dir / "snapshots").glob("trained_*s.pt")), run_dir / CHECKPOINT_NAME]:
        result = evaluate.main([str(path), "--json", "--games", str(games), "--seed", "12345",
                                "--mcts-simulations", str(mcts), "--latest"])
        row = {"snapshot": path.name, "updates": result["steps"], **result["opponents"]}
        rows.append(row)
        with open(run_dir / "curve.jsonl", "a") as out:
            out.write(json.dumps(row) + "\n")
    return rows


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
    parser.add_argument("--snapshot-minutes", type=float, default=20.0,
                        help="copy the checkpoint every this many training minutes, for the curve (0: none)")
    parser.add_argument("--curve-games", type=int, default=20,
                        help="games per opponent for each point of the curve (default: 20; 0: no curve)")
    parser.add_argument("extra", nargs="*", help="more train.py flags, after --")
    args = parser.parse_args()

    argv = ["--agent", "alphazero", "--env", "connect_four", "--total-steps", "10000000", "--seed", str(args.seed),
            "--threads", str(args.threads), "--eval-games", "0", "--run-dir", str(args.run_dir), "--no-progress",
            *args.extra]
    run = prepare(argv)
    lock = RunLock(run.run_dir)
    try:
        loop = run.job.build(run.settings, run.config, run.run_dir)
        loop.callbacks.append(TimeBudget(60 * args.minutes, 60 * args.snapshot_minutes, run.run_dir / "snapshots"))
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
    points = curve(run.run_dir, args.curve_games, args.mcts[0]) if args.curve_games > 0 else []
    if points:
        print(f"\nthe curve ({args.curve_games} games per opponent, the latest net at each point): win/draw/loss %")
        for point in points:
            cells = "  ".join(f"{name} {100 * w['win']:.0f}/{100 * w['draw']:.0f}/{100 * w['loss']:.0f}"
                              for name, w in point.items() if isinstance(w, dict))
            print(f"{point['snapshot']:<20} {cells}")
    print(json.dumps({"minutes": args.minutes, **trained, "evaluation": result, "eval_seconds": eval_seconds,
                      "curve": points}))


if __name__ == "__main__":
    main()
