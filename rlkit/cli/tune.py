"""``rlkit tune``: search a config's fields with Optuna, each trial an ordinary training run.

    rlkit tune --agent dqn --env CartPole --total-steps 20000 --param learning_rate=loguniform:1e-5:1e-2 \\
        --param batch_size=choice:32,64,128 --trials 20 --study-dir studies/dqn-cartpole

Flags other than the ones below are train flags (``--agent``, ``--env``, ``--total-steps``, ``--config``, config
fields), the same for every trial. Trials are run folders under the study directory; a trial whose evaluations fall
below the median of earlier trials at the same step is stopped (pruned). The best trial's values are written to
``STUDY_DIR/best.yml``, a file ``train.py --config`` reads; running again with the same ``--study-dir`` continues
the study.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from rlkit.errors import OneLineParser, UserError, run_command
from rlkit.loop import Interrupted
from rlkit.config import whole_number

OPTUNA_MISSING = 'rlkit tune needs optuna: pip install -e ".[tune]"'


def build_parser() -> argparse.ArgumentParser:
    # allow_abbrev off: the flags tune does not know go to train, so none of them may be read as an abbreviation
    parser = OneLineParser(prog="rlkit tune", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                           hint="see rlkit tune --help", allow_abbrev=False)
    group = parser.add_argument_group("search")
    group.add_argument("--param", action="append", default=[], metavar="NAME=SPEC",
                       help="a field to search: NAME=loguniform:LOW:HIGH, NAME=uniform:LOW:HIGH or NAME=choice:A,B,C")
    group.add_argument("--params", type=Path, metavar="FILE",
                       help="a YAML/TOML file of search spaces: field: {low: L, high: H, log: true} or field: [A, B]")
    group.add_argument("--trials", type=whole_number, default=20, help="trials to run (default: 20)")
    group.add_argument("--timeout", type=float, help="stop starting trials after this many seconds (default: none)")
    group.add_argument("--study-dir", type=Path, default=Path("studies/rlkit"),
                       help="where the trials' runs, study.db, trials.json and best.yml go (default: studies/rlkit)")
    group.add_argument("--seed", type=whole_number, default=1, help="seeds the sampler and every trial's run (default: 1)")
    group.add_argument("--startup-trials", type=whole_number, default=5,
                       help="trials run to the end before pruning starts (default: 5)")
    group.add_argument("--no-pruning", action="store_true", help="run every trial to the end")
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args, train_argv = build_parser().parse_known_args(argv)
    if importlib.util.find_spec("optuna") is None:
        raise UserError(OPTUNA_MISSING)
    import optuna  # the optional extra: only this command needs it

    from rlkit import tune

    if args.trials < 1:
        raise UserError(f"--trials must be at least 1, got {args.trials}")
    if args.startup_trials < 0:
        raise UserError(f"--startup-trials must be at least 0, got {args.startup_trials}")
    if args.seed < 0:  # every trial's run is seeded from it, and a run's seed is unsigned
        raise UserError(f"--seed must be at least 0, got {args.seed}")
    params = [tune.parse_param(text) for text in args.param]
    if args.params is not None:
        params += tune.params_from_file(args.params)
    pruner = (optuna.pruners.NopPruner() if args.no_pruning else
              optuna.pruners.MedianPruner(n_startup_trials=args.startup_trials))
    try:
        result = tune.tune(train_argv, params, args.study_dir, args.trials, args.timeout, args.seed, pruner)
    except Interrupted as stop:
        print(f"stopped: the trials done so far are in {args.study_dir / 'trials.json'} (and their best in "
              f"{args.study_dir / 'best.yml'}); the same --study-dir continues the study")
        sys.exit(stop.exit_code)
    states = [t.state.name.lower() for t in result.study.trials]
    summary = ", ".join(f"{states.count(s)} {s}" for s in dict.fromkeys(states))
    if result.best_file is None:
        print(f"{len(states)} trials ({summary}): none completed, so there is no best file")
    else:
        best = result.study.best_trial
        print(f"{len(states)} trials ({summary}); best: trial {best.number}, {tune.OBJECTIVE} {best.value:.2f}, "
              f"{best.params} -> {result.best_file}")


if __name__ == "__main__":
    run_command(main)
