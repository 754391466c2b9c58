"""Time of rlkit's ring all-reduce (``rlkit.collectives.ring_all_reduce``, ``--allreduce ring``) against the builtin
``torch.distributed.all_reduce``, both on gloo over loopback, for float32 tensors of 1K to 16M elements at 2 and
4 processes on this machine.

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/allreduce_cost.py
    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/allreduce_cost.py --worlds 2 --max-size 1M

Each timing is the median over repetitions (as many as fit in ``--budget`` seconds, 3 to 50) of the first
process's time for one all-reduce, each started after a barrier; the tensor is refilled between repetitions,
outside the timing. Prints a markdown table with the bus bandwidth, 2(N - 1) / N * bytes / time: what each process
sent (and received) per second, the rate the ring's derivation predicts stays flat in N. Every size also checks
that the two results agree.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rlkit.collectives import ring_all_reduce

SIZES = [4 ** k * 1024 for k in range(8)]  # 1K, 4K, ..., 16M elements
METHODS: dict[str, Callable[[torch.Tensor], object]] = {"builtin": dist.all_reduce, "ring": ring_all_reduce}


def size_arg(text: str) -> int:
    """``1K``, ``16M`` or a plain count of elements (K = 1024, M = 1024 * 1024)."""
    scale = {"K": 1024, "M": 1024 ** 2}.get(text[-1:].upper(), 1)
    return int(text[:-1] if scale > 1 else text) * scale


def label(size: int) -> str:
    return f"{size // 1024 ** 2}M" if size >= 1024 ** 2 else f"{size // 1024}K"


def _time_one(reduce: Callable[[torch.Tensor], object], source: torch.Tensor, work: torch.Tensor) -> float:
    work.copy_(source)
    dist.barrier()
    start = time.perf_counter()
    reduce(work)
    return time.perf_counter() - start


def _worker(rank: int, n: int, sizes: list[int], budget: float, store: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=n,
                            timeout=timedelta(seconds=120))
    rows = []
    for size in sizes:
        source = torch.randn(size, generator=torch.Generator().manual_seed(rank))
        work, results, row = torch.empty_like(source), {}, {"size": size}
        for name, reduce in METHODS.items():
            first = _time_one(reduce, source, work)  # also the warm-up (connections, allocations)
            # every process must run as many repetitions: the first one's count decides
            reps = torch.tensor([min(50, max(3, int(budget / max(first, 1e-6))))])
            dist.broadcast(reps, 0)
            row[name] = statistics.median(_time_one(reduce, source, work) for _ in range(int(reps)))
            results[name] = work.clone()
        row["agree"] = bool(torch.allclose(results["ring"], results["builtin"], rtol=1e-5, atol=1e-5))
        rows.append(row)
    if rank == 0:
        Path(out).write_text(json.dumps(rows))
    dist.barrier()
    dist.destroy_process_group()


def bus_bandwidth(n: int, size: int, seconds: float) -> float:
    """GB/s each process sent (and received): 2(N - 1) / N * the tensor's bytes per second."""
    return 2 * (n - 1) / n * size * 4 / seconds / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worlds", type=int, nargs="+", default=[2, 4], help="process counts (default: 2 4)")
    parser.add_argument("--max-size", type=size_arg, default=SIZES[-1], help="largest tensor, e.g. 1M (default: 16M)")
    parser.add_argument("--budget", type=float, default=0.5,
                        help="seconds of repetitions per size and method (default: 0.5)")
    args = parser.parse_args()
    sizes = [size for size in SIZES if size <= args.max_size]
    print("| processes | floats | MB | builtin ms | builtin bus GB/s | ring ms | ring bus GB/s | ring / builtin |")
    print("|---|---|---|---|---|---|---|---|")
    for n in args.worlds:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "rows.json"
            mp.spawn(_worker, args=(n, sizes, args.budget, str(Path(tmp) / "store"), str(out)), nprocs=n, join=True)
            rows = json.loads(out.read_text())
        for row in rows:
            size, builtin, ring = row["size"], row["builtin"], row["ring"]
            check = "" if row["agree"] else " (results differ!)"
            print(f"| {n} | {label(size)} | {size * 4 / 1e6:.3g} | {builtin * 1e3:.3g} | "
                  f"{bus_bandwidth(n, size, builtin):.3g} | {ring * 1e3:.3g} | {bus_bandwidth(n, size, ring):.3g} | "
                  f"{ring / builtin:.2f}x{check} |", flush=True)


if __name__ == "__main__":
    main()
