"""The Nature CNN's input step: uint8 frames (B, C, H, W) to scaled float32 in channels-last order, two ways,
alternating in one sitting with one torch thread and rlkit's allocator settings.

    PYTHONPATH=. python benchmarks/frame_scaling.py
    PYTHONPATH=. python benchmarks/frame_scaling.py --batches 1 32 256 --rounds 10

``reorder-bytes`` reorders the uint8 frames, then converts and divides (the old ``NatureCNN.forward``);
``scale-then-reorder`` converts, divides in place and reorders the float copy (the current one). Both give the same
numbers (checked before timing). Prints the median milliseconds per call of each and their ratio per batch size.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from rlkit.runtime import keep_freed_memory


def reorder_bytes(obs: torch.Tensor) -> torch.Tensor:
    return obs.contiguous(memory_format=torch.channels_last).float() / 255.0


def scale_then_reorder(obs: torch.Tensor) -> torch.Tensor:
    return obs.to(torch.float32, copy=True).div_(255.0).contiguous(memory_format=torch.channels_last)


WAYS = {"reorder-bytes": reorder_bytes, "scale-then-reorder": scale_then_reorder}


def time_call(fn, obs: torch.Tensor, calls: int) -> float:
    for _ in range(3):
        fn(obs)
    start = time.perf_counter()
    for _ in range(calls):
        fn(obs)
    return (time.perf_counter() - start) / calls * 1e3


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32, 256])
    parser.add_argument("--rounds", type=int, default=8, help="alternations of the two ways per batch size")
    parser.add_argument("--calls", type=int, default=50, help="calls per timing")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    keep_freed_memory()
    rows = []
    print("| batch (4x84x84 uint8) | reorder-bytes (ms) | scale-then-reorder (ms) | ratio |\n|---|---|---|---|")
    for batch in args.batches:
        obs = torch.randint(0, 256, (batch, 4, 84, 84), dtype=torch.uint8)
        assert torch.equal(reorder_bytes(obs), scale_then_reorder(obs))
        times: dict[str, list[float]] = {name: [] for name in WAYS}
        for _ in range(args.rounds):
            for name, fn in WAYS.items():
                times[name].append(time_call(fn, obs, args.calls))
        old, new = (statistics.median(times[name]) for name in WAYS)
        rows.append({"batch": batch, "reorder_bytes_ms": old, "scale_then_reorder_ms": new})
        print(f"| {batch} | {old:.3f} | {new:.3f} | {old / new:.2f}x |")
    return rows


if __name__ == "__main__":
    main()
