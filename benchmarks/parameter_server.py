"""Data-parallel training against a parameter server, synchronous and asynchronous, on Fashion-MNIST with the
ResNet: test accuracy after equal epochs, and training images per second.

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/parameter_server.py --data-dir ../shared/data/fashion-mnist

Every mode has 2 workers that compute gradients: ``--distributed ddp`` runs 2 processes under torchrun, each one
a worker stepping its own replica; ``ps-sync`` and ``ps-async`` run 3, the server (rank 0: parameters, optimizer,
evaluation, checkpoints) and 2 workers. Each worker takes half of every epoch with ``--batch-size`` per gradient,
so the three modes see the same images per epoch; a ps-async step is one gradient, the others' one gradient per
worker. ``--train`` images (the first of the official training set) and ``--test`` (the first of the test set) are
written as IDX files into a temporary folder, to keep the run short. Evaluation and checkpoints only at the end:
images/s = images trained / the loop's training seconds (the checkpoint's ``wall_time``, before the final
evaluation).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rlkit.checkpoint import load_checkpoint  # noqa: E402
from rlkit.data import load_dataset  # noqa: E402
from rlkit.data.fixtures import write_idx  # noqa: E402

MODES = {"ddp": 2, "ps-sync": 3, "ps-async": 3}
"""--distributed mode: processes (2 workers each; the parameter server's modes add the server)."""


def subset(data_dir: str, out: Path, train: int, test: int) -> Path:
    """The first ``train`` and ``test`` images of Fashion-MNIST's official files, in the same format."""
    for split, count, stem in (("train", train, "train"), ("test", test, "t10k")):
        data = load_dataset("fashion-mnist", data_dir, split)
        write_idx(out / f"{stem}-images-idx3-ubyte.gz", data.images[:count, 0])
        write_idx(out / f"{stem}-labels-idx1-ubyte.gz", data.labels[:count].astype("uint8"))
    return out


def run(mode: str, args: argparse.Namespace, data: Path, run_dir: Path) -> dict[str, float]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(MODES[mode]),
               str(ROOT / "train.py"), "--task", "fashion-mnist", "--net", "resnet", "--width", str(args.width),
               "--batch-size", str(args.batch_size), "--epochs", str(args.epochs), "--data-dir", str(data),
               "--distributed", mode, "--seed", str(args.seed), "--eval-interval", "100000000",
               "--checkpoint-interval", "100000000", "--no-progress", "--run-dir", str(run_dir)]
    subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True)
    checkpoint = load_checkpoint(run_dir)
    steps = checkpoint["loop"]["steps"]
    images = steps * args.batch_size * (1 if mode == "ps-async" else 2)
    final = json.loads((run_dir / "eval.jsonl").read_text().splitlines()[-1])
    return {"steps": steps, "images": images, "seconds": checkpoint["loop"]["wall_time"],
            "images_per_s": images / checkpoint["loop"]["wall_time"], "accuracy": final["eval/accuracy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="Fashion-MNIST folder (the official files)")
    parser.add_argument("--train", type=int, default=12_000, help="training images used (default: 12000)")
    parser.add_argument("--test", type=int, default=10_000, help="test images used (default: 10000, all)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run (default: 2)")
    parser.add_argument("--width", type=float, default=0.25, help="ResNet width multiplier (default: 0.25)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per worker's gradient (default: 64)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = subset(args.data_dir, Path(tmp) / "data", args.train, args.test)
        print(f"Fashion-MNIST, first {args.train} training and {args.test} test images; resnet width {args.width}, "
              f"batch {args.batch_size} per worker, {args.epochs} epochs, 2 workers")
        print("| --distributed | processes | steps | images/s | test accuracy |")
        print("|---|---|---|---|---|")
        for mode in args.modes:
            result = run(mode, args, data, Path(tmp) / mode)
            print(f"| {mode} | {MODES[mode]} | {result['steps']} | {result['images_per_s']:.0f} | "
                  f"{100 * result['accuracy']:.2f}% |", flush=True)


if __name__ == "__main__":
    main()
