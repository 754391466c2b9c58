"""Image augmentation for agents on pixels."""

from __future__ import annotations

import torch


def random_shift(images: torch.Tensor, pad: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """DrQ's random shift (Kostrikov et al. 2020): pad each image by ``pad`` pixels repeating its border, then crop
    back to its size at a random offset, one offset per image. ``(B, C, H, W)`` in, same shape and dtype out.

    Done by indexing rather than padding a copy: a row index clamped into ``0..H-1`` is the replicated border, so
    uint8 frames stay uint8 and nothing of size ``(H + 2 pad)`` is allocated.
    """
    if pad == 0:
        return images
    b, _, h, w = images.shape
    shifts = torch.randint(0, 2 * pad + 1, (b, 2), device=images.device, generator=generator) - pad
    rows = (torch.arange(h, device=images.device) + shifts[:, :1]).clamp_(0, h - 1)  # (B, H)
    cols = (torch.arange(w, device=images.device) + shifts[:, 1:]).clamp_(0, w - 1)  # (B, W)
    batch = torch.arange(b, device=images.device)[:, None, None]
    # images[b, :, rows[b, i], cols[b, j]] for every i, j: (B, H, W, C) after advanced indexing
    shifted = images.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
    return shifted.permute(0, 3, 1, 2)  # channels-last in memory: the layout the convolutions take anyway
