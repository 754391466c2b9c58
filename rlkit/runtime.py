"""What every job does the same way before it starts: pick a device, seed the generators."""

from __future__ import annotations

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
