"""Test accuracy of classifier runs scored with the batch-norm statistics training kept and with statistics
re-estimated at test time (``--bn-recalibration``), and what each evaluation costs.

    python benchmarks/bn_recalibration.py RUN_DIR [RUN_DIR ...] --rounds 2 --threads 1

The two ways alternate ``--rounds`` times per run in one process; prints one markdown row per run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from rlkit.jobs import load_run  # noqa: E402
from rlkit.jobs.classifier import evaluate_classifier  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("| run | updates | accuracy, training's statistics | accuracy, recalibrated | s per evaluation "
          "(training's / recalibrated) |")
    print("|---|---|---|---|---|")
    for path in args.runs:
        job, checkpoint = load_run(path)
        run = job.rebuild(checkpoint, "cpu")
        if run.calibration is None:
            print(f"| {path} | - | nothing to recalibrate (no dropout before batch norm) | | |")
            continue
        seconds: dict[str, list[float]] = {"kept": [], "recalibrated": []}
        accuracy: dict[str, float] = {}
        for _ in range(args.rounds):
            for name, calibration in (("kept", None), ("recalibrated", run.calibration)):
                start = time.perf_counter()
                metrics = evaluate_classifier(run.learner, run.test, run.eval_transform, run.device,
                                              calibration=calibration)
                seconds[name].append(time.perf_counter() - start)
                accuracy[name] = metrics["eval/accuracy"]
        print(f"| {path.name} | {checkpoint['loop']['steps']} | {100 * accuracy['kept']:.2f}% | "
              f"{100 * accuracy['recalibrated']:.2f}% | {statistics.median(seconds['kept']):.1f} / "
              f"{statistics.median(seconds['recalibrated']):.1f} |", flush=True)


if __name__ == "__main__":
    main()
