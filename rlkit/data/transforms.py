"""Augmentation and normalization of image batches, (B, C, H, W) tensors, applied on the fly to each batch.

Every transform is called as ``transform(x, generator=None)``. Random ones draw from ``generator`` (a
``torch.Generator``; the global one if None), so a generator seeded the same way gives the same batch; all of them
work on the whole batch at once, with no Python loop over images::

    train = Compose([to_float, RandomCrop(32, padding=4), RandomHorizontalFlip(), Normalize(*STATS["cifar10"])])
    x = train(uint8_batch, generator=torch.Generator().manual_seed(step))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from rlkit.errors import UserError

# Per-channel mean and std of the training pixels scaled to [0, 1]. MNIST and Fashion-MNIST were recomputed from the
# official files; CIFAR's are the per-pixel statistics (the often copied CIFAR-10 std 0.2023, 0.1994, 0.2010 is not).
STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # what torchvision's pretrained weights expect
}


class Transform(Protocol):
    """What :class:`Compose` chains: a batch in, a batch out."""

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor: ...


def _check_batch(x: torch.Tensor) -> tuple[int, int, int, int]:
    if x.ndim != 4:
        raise ValueError(f"expected a batch of images (B, C, H, W), got shape {tuple(x.shape)}")
    return tuple(x.shape)  # type: ignore[return-value]


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))


def _generator_device(generator: torch.Generator | None) -> torch.device:
    # Draw on the generator's own device (CPU by default) so results do not depend on where the batch lives.
    return generator.device if generator is not None else torch.device("cpu")


def to_float(images: torch.Tensor | np.ndarray, generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 images -> float32 in [0, 1] (``generator`` is ignored: this lets it sit in a :class:`Compose`)."""
    images = torch.as_tensor(images)
    if images.dtype != torch.uint8:
        raise TypeError(f"to_float expects uint8 images, got {images.dtype}")
    return images.to(torch.float32).div_(255.0)


class Normalize:
    """(x - mean) / std per channel."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ValueError(f"need one mean and one positive std per channel, got mean={mean} std={std}")
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)

    @classmethod
    def for_dataset(cls, name: str) -> Normalize:
        """The standard normalization of a data set named in ``STATS``."""
        if name not in STATS:
            raise UserError(f"no standard mean and std for {name!r}: use one of {', '.join(STATS)}")
        return cls(*STATS[name])

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        channels = _check_batch(x)[1]
        if channels != len(self.mean):
            raise ValueError(f"Normalize has {len(self.mean)} channel(s) of statistics, the batch has {channels}")
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


class RandomCrop:
    """Zero-pad each side by ``padding``, then cut a ``size`` window at an independent random offset per image.

    Offsets are drawn as ``top = randint(H + 2p - h + 1, (B,))`` then ``left`` the same way, from ``generator``.
    """

    def __init__(self, size: int | Sequence[int], padding: int = 0):
        self.size, self.padding = _pair(size), int(padding)
        if self.padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding}")

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        batch, channels, height, width = _check_batch(x)
        (h, w), p = self.size, self.padding
        if h > height + 2 * p or w > width + 2 * p:
            raise ValueError(f"cannot crop {h}x{w} from {height}x{width} images padded by {p}")
        if p:
            x = F.pad(x, (p, p, p, p))
        rng_device = _generator_device(generator)
        top = torch.randint(height + 2 * p - h + 1, (batch,), generator=generator, device=rng_device).to(x.device)
        left = torch.randint(width + 2 * p - w + 1, (batch,), generator=generator, device=rng_device).to(x.device)
        # One gather for the whole batch: image i keeps rows top[i]..top[i]+h-1 and columns left[i]..left[i]+w-1.
        rows = (top[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (left[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        images = torch.arange(batch, device=x.device)[:, None, None, None]
        planes = torch.arange(channels, device=x.device)[None, :, None, None]
        return x[images, planes, rows, cols]

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class RandomHorizontalFlip:
    """Mirror left-right the images chosen by ``torch.rand(B, generator=generator) < p``; keep the others."""

    def __init__(self, p: float = 0.5):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        self.p = float(p)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        batch = _check_batch(x)[0]
        chosen = torch.rand(batch, generator=generator, device=_generator_device(generator)).to(x.device) < self.p
        return torch.where(chosen[:, None, None, None], x.flip(-1), x)

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class Pad:
    """Zero-pad every image to ``size`` (e.g. 28 -> 32), centred; an odd margin puts the extra pixel after."""

    def __init__(self, size: int | Sequence[int]):
        self.size = _pair(size)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _, _, height, width = _check_batch(x)
        (h, w) = self.size
        if h < height or w < width:
            raise ValueError(f"cannot pad {height}x{width} images to the smaller {h}x{w}")
        top, left = (h - height) // 2, (w - width) // 2
        return F.pad(x, (left, w - width - left, top, h - height - top))

    def __repr__(self) -> str:
        return f"Pad(size={self.size})"


class Resize:
    """Bilinear resize to ``size`` (e.g. 224 for ImageNet nets); antialiased, which matters only when shrinking."""

    def __init__(self, size: int | Sequence[int], antialias: bool = True):
        self.size, self.antialias = _pair(size), antialias

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_batch(x)
        if not x.is_floating_point():
            raise TypeError(f"Resize needs float images, got {x.dtype}: put to_float before it")
        if tuple(x.shape[-2:]) == self.size:
            return x
        return F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=self.antialias)

    def __repr__(self) -> str:
        return f"Resize(size={self.size})"


class Compose:
    """Apply transforms in order, handing each the same generator (so the whole chain is reproducible)."""

    def __init__(self, transforms: Sequence[Transform]):
        self.transforms = list(transforms)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        for transform in self.transforms:
            x = transform(x, generator=generator)
        return x

    def __repr__(self) -> str:
        names = ", ".join(getattr(t, "__name__", None) or repr(t) for t in self.transforms)
        return f"Compose([{names}])"
