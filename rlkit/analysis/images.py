"""Image grids: a batch of images tiled into one picture, as a uint8 array (TensorBoard's ``add_image`` with
``dataformats="HWC"``) or a PNG file written with Pillow."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np
import torch


def grid_array(images: torch.Tensor, nrow: int = 8, value_range: tuple[float, float] | None = None,
               padding: int = 2, pad_value: int = 0) -> np.ndarray:
    """Tile ``images`` (N, C, H, W) floats into a uint8 RGB array (rows, cols, 3), ``nrow`` images per row,
    left to right then top to bottom, with ``padding`` pixels of ``pad_value`` around every tile.

    ``value_range`` (low, high) maps to 0..255, values outside are clipped; None: (-1, 1) if any value is
    negative (generator output), else (0, 1). Gray images (C = 1) are repeated to RGB.
    """
    if images.ndim != 4 or images.shape[1] not in (1, 3) or images.shape[0] == 0:
        raise ValueError(f"expected a non-empty batch (N, 1 or 3, H, W), got shape {tuple(images.shape)}")
    if nrow < 1 or padding < 0:
        raise ValueError(f"nrow must be >= 1 and padding >= 0, got {nrow} and {padding}")
    x = images.detach().to("cpu", torch.float32)
    low, high = value_range if value_range is not None else ((-1.0, 1.0) if x.min() < 0 else (0.0, 1.0))
    if not high > low:
        raise ValueError(f"value_range must have low < high, got {value_range}")
    # Round rather than truncate, so 0.5 in [0, 1] becomes 128 and the mapping is symmetric.
    pixels = ((x - low) / (high - low)).clamp(0, 1).mul(255).round().to(torch.uint8)
    pixels = pixels.expand(-1, 3, -1, -1).permute(0, 2, 3, 1).numpy()  # (N, H, W, 3)
    n, h, w, _ = pixels.shape
    cols, rows = min(nrow, n), math.ceil(n / nrow)
    grid = np.full((rows * (h + padding) + padding, cols * (w + padding) + padding, 3), pad_value, np.uint8)
    for i in range(n):
        top, left = padding + (i // cols) * (h + padding), padding + (i % cols) * (w + padding)
        grid[top:top + h, left:left + w] = pixels[i]
    return grid


def save_grid(path: str | Path, images: torch.Tensor, nrow: int = 8, value_range: tuple[float, float] | None = None,
              padding: int = 2) -> Path:
    """Write :func:`grid_array` of ``images`` to the PNG file ``path`` atomically (a temporary file, then
    ``os.replace``: a reader never sees half a picture); returns the path."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = grid_array(images, nrow, value_range, padding)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            Image.fromarray(grid).save(f, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_animation(path: str | Path, frames: list[str | Path], duration_ms: int = 200) -> Path:
    """Write the PNG files ``frames`` as one animated GIF (each shown ``duration_ms``, looping), atomically as
    :func:`save_grid` does; returns the path. Built from the files every time, so it survives a resume."""
    from PIL import Image

    if not frames:
        raise ValueError("no frames to animate")
    path = Path(path)
    images = [Image.open(frame).convert("RGB") for frame in frames]
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            images[0].save(f, format="GIF", save_all=True, append_images=images[1:], duration=duration_ms, loop=0)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
