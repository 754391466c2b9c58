"""What every job does the same way before it starts: pick a device and the number of threads, seed the
generators."""

from __future__ import annotations

import os

import torch

from rlkit.errors import UserError


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` takes a GPU when there is one."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA GPU is visible: use --device cpu or auto")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed torch (and its cuDNN choices) for repeatable runs; numpy randomness uses per-object generators."""
    torch.manual_seed(seed)
    torch.backends.cudnn.benchmark = False


def set_threads(threads: int, convolutional: bool) -> int:
    """Set torch's threads for this process and return the number: ``threads`` when > 0 (``--threads N``); else
    ``OMP_NUM_THREADS`` when set; else the cores (shared out among the processes torchrun starts on this machine)
    for convolutional nets, whose large products gain from them, and one thread for MLPs, whose small products gain
    little from more and slow right down when several runs share the cores (benchmarks/RESULTS.md, "Threads")."""
    if threads <= 0:
        chosen = os.environ.get("OMP_NUM_THREADS", "")
        if chosen.isdigit() and int(chosen) > 0:
            threads = int(chosen)
        elif convolutional:
            threads = max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
        else:
            threads = 1
    torch.set_num_threads(threads)
    return threads
