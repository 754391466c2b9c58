"""Evaluate a saved run: ``python evaluate.py RUN_DIR_OR_CHECKPOINT``.

For an agent: rebuilds the agent and its environment from the checkpoint alone and plays whole games in the
evaluation setting (raw scores, no reward clipping, a lost life does not end the game); prints the mean ± std of the
raw returns. For a classifier: prints its top-1 and top-5 accuracy on the task's test set (``--mc-samples N`` for
Monte Carlo dropout instead of the standard scaling rule). For a GAN: a sample grid, the critic's class accuracy and,
with ``--judge``, the class-conditional accuracy of its samples. For a video classifier (UCF-101): top-1/5/10 per
video, the best and worst classes and the most confused pairs, written with the confusion matrix to ``report.json``
and ``confusion.png`` in the run directory (``--fuse RUN_DIR`` combines two runs' per-video scores, e.g. the
spatial and the temporal stream of a two-stream net).
``python evaluate.py RUN1 RUN2 ... --ensemble`` averages classifier runs' probabilities (each run's scores and the
ensemble's).
``python evaluate.py RUN_DIR --help`` lists the flags for that run's kind.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from rlkit.cli import command, flag_owners
from rlkit.errors import OneLineParser, UserError
from rlkit.jobs import JOBS, Job, load_run
from rlkit.loop import BEST_NAME
from rlkit.config import NON_NEGATIVE, require_all, whole_number


def build_parser(job: Job | None) -> argparse.ArgumentParser:
    """The common flags and ``job``'s (every kind's, for ``--help`` without a run)."""
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                           conflict_handler="resolve",
                           hint=f"see {command('eval')} RUN_DIR --help for the flags of that kind of run")
    parser.add_argument("paths", type=Path, nargs="+", metavar="RUN_DIR_OR_CHECKPOINT",
                        help="a run directory or its checkpoint.pt (several, with --ensemble)")
    parser.add_argument("--ensemble", action="store_true",
                        help="classifier runs of one task: average their class probabilities on the test set and "
                             "report each run and the ensemble")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    parser.add_argument("--seed", type=whole_number, default=12345,
                        help="seeds the evaluation: env seeds, dropout masks, GAN noise (default: 12345)")
    parser.add_argument("--threads", type=whole_number, default=0,
                        help="torch threads (default: 0: torch's own choice, OMP_NUM_THREADS if set, else every "
                             "core); --threads 1 for evaluations side by side")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument("--best", action="store_true",
                        help=f"evaluate the run's {BEST_NAME} (its best evaluation during training) instead of its last "
                             "checkpoint")
    for each in [job] if job is not None else JOBS.values():
        each.add_report_flags(parser)
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    known = build_parser(None).parse_known_args(argv)[0]  # --help without a run lists every kind's flags
    require_all([("--seed", known.seed, NON_NEGATIVE),  # numpy's and gymnasium's seeds are unsigned
                 ("--threads", known.threads, NON_NEGATIVE)])
    if known.threads:
        torch.set_num_threads(known.threads)
    paths = [best_checkpoint(path) if known.best else path for path in known.paths]
    if len(paths) > 1 and not known.ensemble:
        raise UserError(f"{len(paths)} runs given: add --ensemble to average their predictions, or evaluate one "
                        "run at a time")
    if known.ensemble and len(paths) < 2:
        raise UserError("--ensemble averages several runs: give two or more run directories")
    loaded = [load_run(path) for path in paths]
    job, checkpoint = loaded[0]
    parser = build_parser(job)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        refuse_other_kinds_flags(job, unknown)
        parser.parse_args(argv)  # the parser's own one-line error
    args.path = args.paths[0]
    if not args.ensemble:
        return job.report(checkpoint, args)
    ensemble_report = getattr(job, "ensemble_report", None)
    if ensemble_report is None or any(other is not job for other, _ in loaded[1:]):
        kinds = ", ".join(sorted({other.kind for other, _ in loaded}))
        raise UserError(f"--ensemble averages image classifier runs; these are {kinds} runs"
                        + (" (two video runs combine with --fuse)" if "video" in kinds else ""))
    return ensemble_report([checkpoint for _, checkpoint in loaded], args)


def refuse_other_kinds_flags(job: Job, unknown: list[str]) -> None:
    """A flag of another kind of run (``--episodes`` on a classifier) among the ``unknown`` arguments is named with
    the kinds it belongs to, not as an unrecognized argument."""
    found = flag_owners(unknown, lambda: {other.kind: build_parser(other) for other in JOBS.values()
                                          if other is not job})
    if found is not None:
        flag, kinds = found
        article = "an" if job.kind[0] in "aeiou" else "a"
        raise UserError(f"{flag} is a flag of {' and '.join(kinds)} runs, and this is {article} {job.kind} run: "
                        f"see {command('eval')} RUN_DIR --help for its flags")


def best_checkpoint(path: Path) -> Path:
    """The ``best.pt`` of a run directory (or of the directory holding the checkpoint file given)."""
    run_dir = path if path.is_dir() or not path.suffix else path.parent
    best = run_dir / BEST_NAME
    if not best.exists():
        raise UserError(f"no {BEST_NAME} in {run_dir}: it is written at the run's first evaluation (a run with "
                        "--eval-episodes 0, or stopped before evaluating, has none); drop --best to evaluate its last "
                        "checkpoint")
    return best
