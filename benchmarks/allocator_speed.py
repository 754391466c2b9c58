"""Training speed with rlkit's allocator tuning (:func:`rlkit.runtime.keep_freed_memory`) against glibc's default
allocator behaviour (``RLKIT_KEEP_FREED_MEMORY=0``), the two alternating in one sitting.

    PYTHONPATH=. python benchmarks/allocator_speed.py
    PYTHONPATH=. python benchmarks/allocator_speed.py --workloads dqn-breakout sac-halfcheetah --repeats 3

Each run is ``train.py`` with one torch thread and no evaluation (the supervised run evaluates once at its end,
outside the rate); its rate is the median of the loop's ``time/sps`` scalars past the warm-up, as in
``train_rate.py`` (env steps/s for agents, updates/s for the classifier). Speed benchmarks run alone. Prints a
markdown table and appends the rows to ``benchmarks/allocator_speed.jsonl``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_rate import ROOT, alternate  # noqa: E402

NO_EVAL = ["--eval-episodes", "0"]
WORKLOADS: dict[str, tuple[list[str], int]] = {
    # name: (train.py flags, warm-up steps the rate skips)
    "dqn-breakout": (["--agent", "dqn", "--env", "Breakout", "--total-steps", "7000", "--learning-starts", "2000",
                      *NO_EVAL], 2000),
    "der-breakout": (["--agent", "rainbow", "--env", "Breakout", "--preset", "atari100k", "--total-steps", "5000",
                      *NO_EVAL], 1600),
    "sac-halfcheetah": (["--agent", "sac", "--env", "HalfCheetah", "--total-steps", "7000", "--learning-starts",
                         "2000", *NO_EVAL], 2000),
    "ppo-breakout": (["--agent", "ppo", "--env", "Breakout", "--total-steps", "16384", *NO_EVAL], 2048),
    "ppo-halfcheetah": (["--agent", "ppo", "--env", "HalfCheetah", "--total-steps", "20480", *NO_EVAL], 2048),
    # the course's ResNet on Fashion-MNIST: the loop logs time/sps every 100 updates; skip the first 100
    "resnet-fashion-mnist": (["--task", "fashion-mnist", "--net", "resnet", "--width", "0.5", "--max-steps", "400",
                              "--data-dir", str(ROOT.parent / "shared" / "data" / "fashion-mnist")], -900),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "allocator_speed.jsonl")
    args = parser.parse_args()
    variants = {"glibc default": ([], {"RLKIT_KEEP_FREED_MEMORY": "0"}), "kept": ([], {})}
    with tempfile.TemporaryDirectory() as directory:
        print(alternate({name: WORKLOADS[name] for name in args.workloads}, variants, args.repeats, Path(directory),
                        args.out))


if __name__ == "__main__":
    main()
