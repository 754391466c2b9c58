"""The Atari 100k benchmark: an agent on each of the 26 games for several seeds, each run under the ``atari100k``
protocol preset, and the human-normalized report (per-game scores; mean, median and IQM with 95% stratified
bootstrap intervals, as rliable computes them).

    python benchmarks/atari100k.py --seeds 1 2 3 --agent rainbow        # every game; resumes from results.jsonl
    python benchmarks/atari100k.py Breakout Pong --extra "--total-steps 2000"    # a quick try of the pipeline
    python benchmarks/atari100k.py --report                             # the markdown table of what has run
    python benchmarks/atari100k.py --dry-run                            # the plan only: runs nothing

Each run is ``train.py --agent A --env GAME --seed S --preset atari100k --run-dir DIR --no-progress`` (plus
``--extra``) with one torch thread, ``--jobs`` at a time; its score is the final evaluation in ``eval.jsonl``.
Every finished run is appended to ``--results`` at once, keyed by agent, game, seed and ``--extra``, so a run
already there is skipped and a quick try with ``--extra`` never stands in for a full run.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import shlex
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import runner  # train.py on one thread, its evaluations back
import sweep  # the results file's reader

from rlkit.analysis import atari_scores

PRESET_FLAG = ("--preset", "atari100k")
DEFAULT_RESULTS = Path(__file__).resolve().parent / "atari100k" / "results.jsonl"

@dataclass(frozen=True)
class Run:
    agent: str
    game: str
    seed: int
    extra: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str, int, str]:
        return (self.agent, self.game, self.seed, shlex.join(self.extra))


def arguments(run: Run) -> list[str]:
    """train.py's arguments for ``run`` (the runner adds the run directory and ``--no-progress``)."""
    return ["--agent", run.agent, "--env", run.game, "--seed", str(run.seed), *PRESET_FLAG, *run.extra]


def key_of(entry: dict[str, Any]) -> tuple[str, str, int, str]:
    return (entry["agent"], entry["game"], entry["seed"], entry.get("extra", ""))


def build_plan(games: list[str], seeds: list[int], agent: str, extra: tuple[str, ...],
               results: list[dict[str, Any]]) -> tuple[list[Run], list[Run]]:
    """Every run of ``games`` x ``seeds``, split into those still to run and those already in ``results``."""
    done = {key_of(entry) for entry in results}
    runs = [Run(agent, game, seed, extra) for game in games for seed in seeds]
    return [r for r in runs if r.key not in done], [r for r in runs if r.key in done]


def execute(run: Run, runs_dir: Path | None = None) -> dict[str, Any]:
    """Train one run (in ``runs_dir``, kept for evaluate.py, or in a scratch folder) and return its results
    entry."""
    began = time.monotonic()
    final = runner.train(arguments(run), runs_dir / f"{run.agent}_{run.game}_s{run.seed}" if runs_dir else None)[-1]
    agent, game, seed, extra = run.key
    return {"agent": agent, "game": game, "seed": seed, "extra": extra, "mean": final["eval/mean_return"],
            "steps": final["step"], "wall_s": round(time.monotonic() - began, 1),
            "eval_s": round(final.get("eval_seconds", float("nan")), 1),
            "date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d}"}


def run_all(todo: list[Run], jobs: int, results_path: Path, runs_dir: Path | None = None) -> None:
    """Run ``todo`` ``jobs`` at a time, appending each finished run to ``results_path`` as soon as it ends."""
    results_path.parent.mkdir(parents=True, exist_ok=True)
    lock = threading.Lock()

    def one(run: Run) -> None:
        try:
            entry = execute(run, runs_dir)
        except RuntimeError as error:
            print(f"FAILED {run.game} seed {run.seed}: {error}", flush=True)
            return
        with lock, results_path.open("a") as out:
            out.write(json.dumps(entry) + "\n")
        print(f"{run.game:15} seed {run.seed}: {entry['mean']:9.1f} in {entry['wall_s']:6.0f} s "
              f"({entry['eval_s']:.0f} s of it evaluating)", flush=True)

    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        list(pool.map(one, todo))


def print_report(results: list[dict[str, Any]], games: list[str], seeds: list[int], agent: str,
                 extra: tuple[str, ...], reps: int) -> None:
    """The markdown table over the games whose every seed has run (the bootstrap needs a full matrix)."""
    scores = {key_of(entry): entry["mean"] for entry in results}  # the newest entry of a run wins
    extra_key = shlex.join(extra)
    raw = {game: [scores.get((agent, game, seed, extra_key)) for seed in seeds] for game in games}
    complete = {game: values for game, values in raw.items() if None not in values}
    missing = [game for game in games if game not in complete]
    if not complete:
        print(f"no game has all of seeds {seeds} for {agent} in the results yet")
        return
    print(atari_scores.format_table(atari_scores.report(complete, reps=reps),
                                    list(atari_scores.PUBLISHED.values())))
    if missing:
        print(f"\nleft out (not every seed has run): {', '.join(missing)}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("games", nargs="*", default=list(atari_scores.ATARI_100K_GAMES),
                        help="games (Breakout, ALE/Breakout-v5, ...); default: all 26")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--agent", default="rainbow")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (one torch thread each)")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="the runs so far, one JSON per line")
    parser.add_argument("--extra", default="", help="more train.py arguments, e.g. \"--total-steps 2000\"")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap replicates of the report")
    parser.add_argument("--report", action="store_true", help="print the table of the results so far; run nothing")
    parser.add_argument("--dry-run", action="store_true", help="print the plan; run nothing")
    parser.add_argument("--runs-dir", type=Path, help="keep each run in RUNS_DIR/AGENT_GAME_sSEED, for evaluate.py "
                                                      "and TensorBoard (default: scratch folders, deleted)")
    args = parser.parse_args(argv)
    try:
        args.games = [atari_scores.canonical_game(game) for game in args.games]
    except ValueError as error:
        parser.error(str(error))
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    args.extra = tuple(shlex.split(args.extra))
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    results = sweep.load_results(args.results)
    if args.report:
        print_report(results, args.games, args.seeds, args.agent, args.extra, args.reps)
        return
    todo, done = build_plan(args.games, args.seeds, args.agent, args.extra, results)
    print(f"{len(done)} of {len(todo) + len(done)} runs already in {args.results}; {len(todo)} to go, "
          f"{args.jobs} at a time", flush=True)
    if args.dry_run:
        for run in todo:
            print(shlex.join(runner.command(arguments(run), Path("RUN_DIR"))))
        return
    run_all(todo, args.jobs, args.results, args.runs_dir)
    print()
    print_report(sweep.load_results(args.results), args.games, args.seeds, args.agent, args.extra, args.reps)


if __name__ == "__main__":
    main()
