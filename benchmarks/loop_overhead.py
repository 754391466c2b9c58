"""Images/s of the shared loop against a minimal hand-written PyTorch loop: same net, data, augmentation,
optimizer and batch size, so the difference is what the loop adds (batching, logging, progress, bookkeeping).

    python benchmarks/loop_overhead.py --task fashion-mnist --net resnet --data-dir ../shared/data/fashion-mnist

Runs the two loops alternately ``--rounds`` times (after a warm-up) and reports the median of each.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from rlkit.jobs import JOBS  # noqa: E402
from rlkit.jobs.supervised import SupervisedSettings  # noqa: E402

CLASSIFIER = JOBS["classifier"]


def shared_loop_rate(settings: SupervisedSettings, config, steps: int) -> float:
    loop = CLASSIFIER.build(settings, config, Path(tempfile.mkdtemp()) / "run")
    loop.evaluate_fn = None
    loop.config.checkpoint_interval = 10**12
    loop.save = lambda: None  # the end-of-run checkpoint is not part of the per-step cost
    loop.config.total_steps = steps
    start = time.perf_counter()
    loop.run()
    return steps * config.batch_size / (time.perf_counter() - start)


def hand_written_rate(settings: SupervisedSettings, config, steps: int) -> float:
    """What a user would write by hand: shuffle, slice, augment, forward, loss, backward, step."""
    loop = CLASSIFIER.build(settings, config, Path(tempfile.mkdtemp()) / "run")  # only to build the same parts
    model, optimizer = loop.learner.model, loop.learner.optimizer
    images, labels = loop.source.images, loop.source.labels
    transform, batch = loop.source.transform, config.batch_size
    perm = torch.from_numpy(np.random.default_rng(0).permutation(len(labels)))
    model.train()
    start = time.perf_counter()
    for step in range(steps):
        rows = perm[(step * batch) % (len(labels) - batch):][:batch]
        x, y = transform(images[rows]), labels[rows]
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="fashion-mnist")
    parser.add_argument("--net", default="resnet")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--steps", type=int, default=60, help="updates per measurement (default: 60)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = SupervisedSettings(args.task, args.net, args.data_dir, device="cpu", progress=False)
    config = dataclasses.replace(CLASSIFIER.preset({"net": args.net}), batch_size=args.batch_size)
    shared_loop_rate(settings, config, 5)  # warm-up
    shared, hand = [], []
    for _ in range(args.rounds):
        shared.append(shared_loop_rate(settings, config, args.steps))
        hand.append(hand_written_rate(settings, config, args.steps))
    s, h = statistics.median(shared), statistics.median(hand)
    print(f"shared loop {[round(r) for r in shared]} images/s, hand-written {[round(r) for r in hand]}")
    print(f"| {args.task} {args.net} batch {args.batch_size} | {s:.0f} | {h:.0f} | {100 * (h - s) / h:+.1f}% |")


if __name__ == "__main__":
    main()
