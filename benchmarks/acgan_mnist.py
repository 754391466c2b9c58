"""ACGAN (WGAN-GP) on real MNIST at 32x32: the class-conditional accuracy of its samples, judged by an independently
trained classifier, against training time.

    python benchmarks/acgan_mnist.py --data-dir ../shared/data/mnist --width 32 --steps 2000
    python benchmarks/acgan_mnist.py --data-dir ../shared/data/mnist -- --class-weight 10 --learning-rate 3e-4

Flags after ``--`` go to ``train.py`` unchanged (any ACGAN setting: ``python train.py --net acgan --help``).

Trains the judge first (``--judge-net`` with ``--judge-flags``, default a quarter-width deep CNN for 2 epochs with
the random-crop augmentation: about 3 minutes) unless ``--judge RUN_DIR`` is given,
then the ACGAN through ``train.py`` with ``--judge``, so every evaluation logs ``eval/class_conditional_accuracy``
(100 samples per class). Prints the curve and a markdown row; ``--grid FILE.png`` keeps the last sample grid.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import evaluate  # noqa: E402
import train  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--width", type=int, default=32, help="channels of both networks (assignment: 196)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2000, help="critic updates (default: 2000)")
    parser.add_argument("--eval-interval", type=int, default=250)
    parser.add_argument("--judge", type=Path, help="a trained MNIST classifier run (default: train one)")
    parser.add_argument("--judge-net", default="cnn",
                        help="the judge must be trained with the GAN's augmentation: the GAN learns shifted digits "
                             "(random crop, padding 4), which a judge that never saw shifts misreads")
    parser.add_argument("--judge-flags", default="--width 0.25 --epochs 2 --schedule cosine",
                        help="train.py flags of the judge's training run (write --judge-flags=\"...\")")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--grid", type=Path, help="copy the last sample grid here")
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp())
    judge = args.judge
    if judge is None:
        judge = work / "judge"
        train.main(["--task", "mnist", "--net", args.judge_net, "--data-dir", args.data_dir, "--run-dir", str(judge),
                    "--no-progress", *args.judge_flags.split()])
    judge_accuracy = evaluate.main([str(judge), "--json"])["accuracy"]
    run = work / "acgan"
    start = time.perf_counter()
    train.main(["--task", "mnist", "--net", "acgan", "--data-dir", args.data_dir, "--width", str(args.width),
                "--batch-size", str(args.batch_size), "--max-steps", str(args.steps), "--eval-interval",
                str(args.eval_interval), "--judge", str(judge), "--seed", str(args.seed), "--run-dir", str(run),
                "--no-progress", *extra])
    wall = time.perf_counter() - start
    evals = [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]
    for row in evals:
        print(f"step {row['step']:>6}: class-conditional accuracy {100 * row['eval/class_conditional_accuracy']:.1f}%, "
              f"critic's class head on test {100 * row['eval/critic_class_accuracy']:.2f}%")
    grids = sorted((run / "samples").glob("*.png"))
    if args.grid and grids:
        shutil.copyfile(grids[-1], args.grid)
    final = evals[-1]
    print(f"| width {args.width}, batch {args.batch_size}, {args.steps} updates {' '.join(extra)} | judge {args.judge_net} "
          f"{100 * judge_accuracy:.2f}% | {100 * final['eval/class_conditional_accuracy']:.1f}% | "
          f"{100 * final['eval/critic_class_accuracy']:.2f}% | {wall / 60:.1f} min, {args.threads} threads |")


if __name__ == "__main__":
    main()
