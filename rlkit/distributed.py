"""Data-parallel training on torch.distributed: ``torchrun --nproc-per-node N train.py ...`` runs the same job on N
processes (gloo on CPUs, NCCL on GPUs). Without torchrun every function here is a no-op for one process."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import torch
import torch.distributed as dist


def init_distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world size). Joins the process group that torchrun describes in the environment (``WORLD_SIZE`` > 1);
    a single process stays as it is."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if not launched_by_torchrun():
        return 0, 1
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


def launched_by_torchrun() -> bool:
    """Whether this process is one of several that torchrun started."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def world() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """Only the first process writes logs and checkpoints (and prints: torchrun's RANK tells before the group
    is joined)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def average_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """The mean of each metric over all processes (every process must pass the same keys)."""
    if world()[1] == 1 or not metrics:
        return metrics
    keys = sorted(metrics)
    values = torch.tensor([metrics[k] for k in keys], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        values = values.cuda()
    dist.all_reduce(values)
    return dict(zip(keys, (values / dist.get_world_size()).tolist()))


def all_reduce_sum(tensor: torch.Tensor) -> None:
    """Sum ``tensor`` over all processes, in place."""
    dist.all_reduce(tensor)


def sum_over_processes() -> Callable[[torch.Tensor], None] | None:
    """:func:`all_reduce_sum` under torchrun, None for one process: what statistics kept by every process (such as
    :class:`rlkit.nets.RunningMeanStd`) take to stay equal."""
    return all_reduce_sum if world()[1] > 1 else None


def all_reduce_gradients(params: list[torch.nn.Parameter]) -> None:
    """Average the gradients of ``params`` over all processes (for learners that do not use DDP, such as the
    on-policy agents whose networks run outside their loss)."""
    n = world()[1]
    if n == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= n
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def shutdown() -> None:
    """Wait for every process to finish (the first one evaluates and saves last), then leave the group; leaving
    without it can abort a process while its peer still talks to it."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def exit_without_teardown(code: int = 0) -> None:
    """End a process whose work is done, saved and whose group is shut down, without C++ static destructors:
    gloo's threads can abort the process there (``terminate called without an active exception``, about 1 exit
    in 20 to 40 on this machine; pytorch/gloo#155), which torchrun would report as a failed run."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
