"""What every job does the same way before it starts: pick a device and the number of threads, seed the
generators, check that the run directory and the machine can take the run."""

from __future__ import annotations

import ctypes
import os
import platform
import re
from pathlib import Path

import torch

from rlkit.errors import UserError

DEVICE_NAMES = re.compile(r"auto|cpu(:\d+)?|mps(:\d+)?|cuda(:\d+)?")
"""The --device names torch takes: ``cpu:0`` is the CPU, as ``torch.device`` writes it."""


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` takes a GPU when there is one; an unknown name or a missing GPU is a one-line error."""
    if not DEVICE_NAMES.fullmatch(name):
        raise UserError(f"unknown --device {name!r}: use auto, cpu, cuda or cuda:N")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith(("cpu:", "mps:")) and int(name[4:]) != 0:
        kind = name[:3]
        raise UserError(f"--device {name}: there is one {kind} device, {kind} (or {kind}:0)")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA GPU is visible: use --device cpu or auto")
    if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
        raise UserError(f"--device {name}: this machine has {torch.cuda.device_count()} GPU(s), numbered from 0")
    if name.startswith("mps") and not torch.backends.mps.is_available():
        raise UserError("--device mps was asked for but this machine has no Apple GPU: use --device cpu or auto")
    return torch.device(name)


PRECISIONS = ("fp32", "bf16", "auto")
"""``--precision``: what the learner's updates compute in. ``bf16`` runs them under ``torch.autocast`` with
bfloat16 (matrix products and convolutions in bf16, reductions and losses in fp32, weights and optimizer state
fp32); acting and evaluation stay fp32. ``auto`` is bf16 where the device multiplies bf16 natively
(:func:`has_fast_bf16`), else fp32."""

BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})
"""CPU flags (Linux's ``/proc/cpuinfo``) of native bf16 matrix arithmetic; without them bf16 is emulated, slower
than fp32."""


def has_fast_bf16(device: torch.device, cpuinfo: str | None = None) -> bool:
    """Whether ``device`` multiplies bf16 matrices natively: a CUDA GPU that supports bf16, or a CPU whose flags in
    ``cpuinfo`` (default: ``/proc/cpuinfo``; where there is none, the answer is no) include AMX or AVX512-BF16."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type != "cpu":
        return False
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = {flag for line in cpuinfo.splitlines() if line.split(":")[0].strip() == "flags"
             for flag in line.split(":", 1)[1].split()}
    return bool(flags & BF16_CPU_FLAGS)


def update_autocast(precision: str, device: torch.device) -> str | None:
    """The device type whose updates run under bf16 autocast for ``--precision precision``, or None for fp32."""
    if precision not in PRECISIONS:
        raise UserError(f"unknown --precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        precision = "bf16" if has_fast_bf16(device) else "fp32"
    if precision == "fp32":
        return None
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"--precision bf16 runs on cpu or cuda, not {device.type}: use --precision fp32")
    return device.type


def seed_everything(seed: int) -> None:
    """Seed torch (and its cuDNN choices) for repeatable runs; numpy randomness uses per-object generators."""
    torch.manual_seed(seed)
    torch.backends.cudnn.benchmark = False


def set_threads(threads: int, large_convolutions: bool) -> int:
    """Set torch's threads for this process and return the number: ``threads`` when > 0 (``--threads N``); else
    ``OMP_NUM_THREADS`` when set; else one thread, or the cores (shared out among the processes torchrun starts on
    this machine) for the large convolutions of supervised image and video nets. One thread costs a lone run little
    and keeps runs side by side from thrashing, where a thread per core each slows them several times over;
    supervised nets gain most from more threads and usually train alone (benchmarks/RESULTS.md, "Threads")."""
    if threads <= 0:
        chosen = os.environ.get("OMP_NUM_THREADS", "")
        if chosen.isdigit() and int(chosen) > 0:
            threads = int(chosen)
        elif large_convolutions:
            threads = max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
        else:
            threads = 1
    torch.set_num_threads(threads)
    return threads


def prepare_process(threads: int, large_convolutions: bool) -> int:
    """A training job's first step, before it builds anything: torch's threads (:func:`set_threads`, whose number
    it returns) and an allocator that keeps freed tensor memory (:func:`keep_freed_memory`)."""
    chosen = set_threads(threads, large_convolutions)
    keep_freed_memory()
    return chosen


# glibc's mallopt parameters (malloc.h) and the values rlkit sets.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest: blocks above it still get their own mapping
TRIM_THRESHOLD = 256 * 1024 * 1024  # free memory the heap may keep at its top before it gives some back
_allocator_tuned: bool | None = None


def keep_freed_memory() -> bool:
    """Let glibc's allocator reuse freed tensor memory instead of handing it back to the OS at once.

    By default glibc serves a block over 128 KiB (a minibatch of Atari frames, an activation of a conv net) from a
    fresh mapping, or trims the heap back after it is freed, so the next update's same-sized tensor takes a page
    fault per 4 KiB page and is zeroed by the kernel again: on CPU that cost more than the convolutions it feeds
    (benchmarks/RESULTS.md, "Allocator"). Raising the mapping and trim thresholds keeps those pages in the heap.
    jemalloc and tcmalloc users get the same from their allocator.

    Does nothing (returns False) off glibc, or when ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``,
    ``MALLOC_TOP_PAD_`` or ``RLKIT_KEEP_FREED_MEMORY=0`` is set in the environment (the user's own choice stands).
    The first call decides; later calls return its answer. Training jobs call it before they build anything.
    """
    global _allocator_tuned
    if _allocator_tuned is None:
        _allocator_tuned = _tune_glibc_malloc()
    return _allocator_tuned


def _tune_glibc_malloc() -> bool:
    own = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
    if os.environ.get("RLKIT_KEEP_FREED_MEMORY", "1") == "0" or any(name in os.environ for name in own):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; setting the mmap threshold also stops glibc from moving it on its own
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1


def check_run_dir(run_dir: Path | None) -> None:
    """Refuse a ``--run-dir`` that cannot be written, before anything is built: a file, a path under a file, or a
    folder (or its nearest existing parent) that is read-only."""
    if run_dir is None:
        return
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"--run-dir {run_dir} is a file, not a folder: pick another --run-dir")
    existing = run_dir
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"--run-dir {run_dir} is under {existing}, which is a file: pick another --run-dir")
    # os.access also says no on a read-only mount for root, whose permission bits are otherwise ignored
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"--run-dir {run_dir} cannot be written ({existing} is read-only): pick another --run-dir")


def available_memory() -> int | None:
    """Bytes of RAM this process can still take: MemAvailable, or less under a cgroup limit (None if unknown)."""
    try:
        with open("/proc/meminfo") as f:
            available = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
        if limit != "max":
            available = min(available, int(limit) - used)
    except (OSError, ValueError):
        pass
    return available


def cpu_count() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
