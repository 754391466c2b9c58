"""Static against dynamic graphs: training images/s of the course's ``cnn`` and ``resnet`` nets in eager PyTorch
and through ``--compile`` (torch.compile, Inductor), on CIFAR-shaped batches.

    OMP_NUM_THREADS=1 python benchmarks/compile_speed.py --threads 1 --seconds 20

Each side builds the net from its catalog row and trains it with rlkit's Classifier learner (one update = forward,
cross-entropy, backward, Adam) on random batches of 128 32x32x3 images. The compiled side's first updates, where
TorchDynamo traces and Inductor compiles, are timed apart ("compile time"); both sides then run ``--warmup``
updates untimed and are timed over ``--seconds`` of updates. Dropout is off on both sides (0) so both compute the
same function.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from rlkit.jobs.catalog import NETS  # noqa: E402
from rlkit.supervised.classifier import Classifier, ClassifierConfig  # noqa: E402


def timed_updates(learner: Classifier, batch: tuple[torch.Tensor, torch.Tensor], seconds: float) -> float:
    """Images per second over ``seconds`` of updates."""
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        learner.update(batch)
        count += 1
    return count * len(batch[1]) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nets", default="cnn,resnet")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=20.0, help="timed window per side")
    parser.add_argument("--warmup", type=int, default=3, help="untimed updates per side after compiling")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch_size}, 32x32x3")
    print("| net | eager images/s | compiled images/s | compiled / eager | compile time |")
    print("|---|---|---|---|---|")
    for name in args.nets.split(","):
        torch.manual_seed(0)
        config = ClassifierConfig(dropout=0.0)
        model = NETS[name].build(config, 3, 32, 10)
        batch = (torch.randn(args.batch_size, 3, 32, 32), torch.randint(0, 10, (args.batch_size,)))
        eager = Classifier(model, config, 1, torch.device("cpu"))
        compiled = Classifier(copy.deepcopy(model), ClassifierConfig(dropout=0.0, compile=True), 1,
                              torch.device("cpu"))
        start = time.perf_counter()
        compiled.update(batch)  # the trace and the compilation happen here (forward and backward)
        compiled.update(batch)
        compile_time = time.perf_counter() - start
        for learner in (eager, compiled):
            for _ in range(args.warmup):
                learner.update(batch)
        eager_rate = timed_updates(eager, batch, args.seconds)
        compiled_rate = timed_updates(compiled, batch, args.seconds)
        print(f"| {name} | {eager_rate:.0f} | {compiled_rate:.0f} | {compiled_rate / eager_rate:.2f}x | "
              f"{compile_time:.0f} s |", flush=True)


if __name__ == "__main__":
    main()
