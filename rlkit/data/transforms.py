"""Augmentation and normalization of batches, applied on the fly: one library for images and videos.

Every transform takes a batch ``(B, ..., C, H, W)``: dimension 0 holds the samples, the last three the channels,
rows and columns of each picture, and anything in between is carried along. So an image batch is ``(B, C, H, W)``,
a batch of clips ``(B, T, C, H, W)``, of evenly spaced clips ``(B, N, T, C, H, W)``.

Every transform is called as ``transform(x, generator=None)``. Random ones draw once per sample from ``generator``
(a ``torch.Generator``; the global one if None), the same numbers whatever the layout, so every frame of a video
gets the same crop, flip and brightness, and a generator seeded the same way gives the same batch. They work on the
whole batch at once (except :class:`RandomResizedCrop`, one resize per sample)::

    train = Compose([to_float, RandomCrop(32, padding=4), RandomHorizontalFlip(), Normalize(*STATS["cifar10"])])
    x = train(uint8_batch, generator=torch.Generator().manual_seed(step))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

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
FLOW_STATS = ((0.5, 0.5), (0.5, 0.5))
"""Quantized optical flow (x, y) scaled to [0, 1] -> [-1, 1], i.e. flow / bound: no motion is about 0."""
KINETICS_STATS = ((0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989))
"""Mean and std of Kinetics-400 frames in [0, 1]: what torchvision's video weights (r3d_18, r2plus1d_18) expect."""


class Transform(Protocol):
    """What :class:`Compose` chains: a batch in, a batch out."""

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor: ...


# ---------------------------------------------------------------------------------------------------- helpers
def _check_batch(x: torch.Tensor, what: str) -> torch.Tensor:
    if x.ndim < 4:
        raise ValueError(f"{what} expects a batch (B, C, H, W) or (B, ..., C, H, W), got shape {tuple(x.shape)}")
    return x


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))


def _draw_device(generator: torch.Generator | None) -> torch.device:
    # Draw on the generator's own device (CPU by default), so a batch on a GPU gets the same numbers.
    return generator.device if generator is not None else torch.device("cpu")


def _rand(count: int, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(count, generator=generator, device=_draw_device(generator))


def _randint(high: int, count: int, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randint(high, (count,), generator=generator, device=_draw_device(generator))


def _per_sample(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``(B,)`` values shaped to broadcast over the rest of ``x``, on its device."""
    return values.to(x.device).view(-1, *([1] * (x.ndim - 1)))


def resize(x: torch.Tensor, size: tuple[int, int], antialias: bool = True) -> torch.Tensor:
    """Float ``(..., C, H, W)`` -> ``(..., C, *size)``, bilinear; antialiased (it matters only when shrinking)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    flat = x.reshape(-1, *x.shape[-3:])  # F.interpolate wants exactly (N, C, H, W)
    out = F.interpolate(flat, size=size, mode="bilinear", align_corners=False, antialias=antialias)
    return out.reshape(*x.shape[:-2], *size)


# ---------------------------------------------------------------------------------------------------- deterministic
def to_float(images: torch.Tensor | np.ndarray, generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 images -> float32 in [0, 1] (``generator`` is ignored: this lets it sit in a :class:`Compose`)."""
    images = torch.as_tensor(images)
    if images.dtype != torch.uint8:
        raise TypeError(f"to_float expects uint8 images, got {images.dtype}")
    return images.to(torch.float32).div_(255.0)


class Normalize:
    """(x - mean) / std per channel; the channels are dimension ``channel_dim`` (-3: ``(..., C, H, W)``; -4 for
    clips laid out ``(..., C, T, H, W)``)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], channel_dim: int = -3):
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ValueError(f"need one mean and one positive std per channel, got mean={mean} std={std}")
        if channel_dim >= 0:
            raise ValueError(f"channel_dim counts from the end (-3 for (..., C, H, W)), got {channel_dim}")
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.channel_dim = channel_dim

    @classmethod
    def for_dataset(cls, name: str) -> Normalize:
        """The standard normalization of a data set named in ``STATS``."""
        if name not in STATS:
            raise UserError(f"no standard mean and std for {name!r}: use one of {', '.join(STATS)}")
        return cls(*STATS[name])

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        channels = x.shape[self.channel_dim] if x.ndim >= -self.channel_dim else None
        if channels != len(self.mean):
            raise ValueError(f"Normalize has {len(self.mean)} channel(s) of statistics, but dimension "
                             f"{self.channel_dim} of shape {tuple(x.shape)} is not that many channels")
        shape = (-1, *([1] * (-self.channel_dim - 1)))  # broadcasts over the dimensions after the channels
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(shape)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(shape)
        return (x - mean) / std

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


class Resize:
    """Resize every picture of float ``(..., C, H, W)`` to ``size`` (e.g. 224 for ImageNet nets), bilinear;
    antialiased, which matters only when shrinking."""

    def __init__(self, size: int | Sequence[int], antialias: bool = True):
        self.size, self.antialias = _pair(size), antialias

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.ndim < 3:
            raise ValueError(f"Resize expects (..., C, H, W), got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"Resize needs float images, got {x.dtype}: put to_float before it")
        return resize(x, self.size, self.antialias)

    def __repr__(self) -> str:
        return f"Resize(size={self.size})"


class Pad:
    """Zero-pad every picture to ``size`` (e.g. 28 -> 32), centred; an odd margin puts the extra pixel after."""

    def __init__(self, size: int | Sequence[int]):
        self.size = _pair(size)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        height, width = x.shape[-2:]
        (h, w) = self.size
        if h < height or w < width:
            raise ValueError(f"cannot pad {height}x{width} images to the smaller {h}x{w}")
        top, left = (h - height) // 2, (w - width) // 2
        return F.pad(x, (left, w - width - left, top, h - height - top))

    def __repr__(self) -> str:
        return f"Pad(size={self.size})"


def to_channels_first_clips(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Clips ``(..., T, C, H, W)`` -> ``(..., C, T, H, W)``, the layout of the 3D ResNets (put it last: the other
    transforms expect the channels at -3)."""
    return x.transpose(-4, -3)


# ---------------------------------------------------------------------------------------------------- random
class RandomCrop:
    """Zero-pad each side by ``padding``, then cut a ``size`` window at a random offset per sample (the same on
    every frame of a video).

    Offsets are drawn as ``top = randint(H + 2p - h + 1, (B,))`` then ``left`` the same way, from ``generator``.
    """

    def __init__(self, size: int | Sequence[int], padding: int = 0):
        self.size, self.padding = _pair(size), int(padding)
        if self.padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding}")

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        batch, height, width = _check_batch(x, "RandomCrop").shape[0], x.shape[-2], x.shape[-1]
        (h, w), p = self.size, self.padding
        if h > height + 2 * p or w > width + 2 * p:
            raise ValueError(f"cannot crop {h}x{w} from {height}x{width} images padded by {p}")
        if p:
            x = F.pad(x, (p, p, p, p))
        top = _randint(height + 2 * p - h + 1, batch, generator).to(x.device)
        left = _randint(width + 2 * p - w + 1, batch, generator).to(x.device)
        # One gather for the whole batch: sample i keeps rows top[i]..top[i]+h-1 and columns left[i]..left[i]+w-1
        # of every plane (channel, or channel of a frame) it has.
        planes = x.reshape(batch, -1, *x.shape[-2:])
        rows = (top[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (left[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        samples = torch.arange(batch, device=x.device)[:, None, None, None]
        plane = torch.arange(planes.shape[1], device=x.device)[None, :, None, None]
        return planes[samples, plane, rows, cols].reshape(*x.shape[:-2], h, w)

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class RandomHorizontalFlip:
    """Mirror left-right the samples chosen by ``torch.rand(B, generator=generator) < p`` (every frame of a chosen
    video); keep the others."""

    def __init__(self, p: float = 0.5):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        self.p = float(p)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        chosen = _rand(_check_batch(x, "RandomHorizontalFlip").shape[0], generator) < self.p
        return torch.where(_per_sample(chosen, x), x.flip(-1), x)

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class FlowHorizontalFlip:
    """Mirror left-right the flow fields ``(B, ..., 2, H, W)`` (x component first, quantized flow in [0, 1]) of the
    samples chosen by ``torch.rand(B, generator=generator) < p``: a mirrored video moves the other way, so the x
    component also changes sign (``1 - x`` on the [0, 1] scale)."""

    def __init__(self, p: float = 0.5):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        self.p = float(p)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        chosen = _rand(_check_batch(x, "FlowHorizontalFlip").shape[0], generator) < self.p
        if x.shape[-3] != 2:
            raise ValueError(f"FlowHorizontalFlip expects (x, y) flow at dimension -3, got shape {tuple(x.shape)}")
        mirrored = x.flip(-1)
        mirrored = torch.cat([1 - mirrored[..., :1, :, :], mirrored[..., 1:, :, :]], dim=-3)
        return torch.where(_per_sample(chosen, x), mirrored, x)

    def __repr__(self) -> str:
        return f"FlowHorizontalFlip(p={self.p})"


def stack_flow(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Stacks of L flow fields ``(..., L, 2, H, W)`` -> ``(..., 2L, H, W)``, channels x1, y1, x2, y2, ...: the
    temporal net's input (put it last)."""
    return x.flatten(-4, -3)


class RandomResizedCrop:
    """Cut from each sample a window of ``scale`` (70-100%) of the picture's area with an aspect ratio
    (width/height) in ``ratio``, the same window on every frame of a video, and resize it to ``size``. Float
    ``(B, ..., C, H, W)`` -> ``(B, ..., C, *size)``. A window that would stick out of the picture keeps its area
    and spans the picture's height (or width) instead, leaving the ratio range.

    Draws per sample from ``generator``, in this order: area, log aspect ratio, top, left (each ``rand(B)``).
    """

    def __init__(self, size: int | Sequence[int], scale: tuple[float, float] = (0.7, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3)):
        if not 0 < scale[0] <= scale[1] <= 1 or not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"need 0 < scale[0] <= scale[1] <= 1 and 0 < ratio[0] <= ratio[1], got {scale}, {ratio}")
        self.size, self.scale, self.ratio = _pair(size), scale, ratio

    def boxes(self, batch: int, height: int, width: int, generator: torch.Generator | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Windows for ``batch`` samples of ``height`` x ``width`` pictures: (top, left, h, w), each ``(batch,)``."""
        area = height * width * (self.scale[0] + (self.scale[1] - self.scale[0]) * _rand(batch, generator))
        low, high = math.log(self.ratio[0]), math.log(self.ratio[1])
        aspect = torch.exp(low + (high - low) * _rand(batch, generator))
        w, h = torch.sqrt(area * aspect), torch.sqrt(area / aspect)
        # A window that does not fit keeps its area: it takes the picture's whole height (or width).
        w, h = torch.where(h > height, area / height, w), h.clamp(max=height)
        h, w = torch.where(w > width, area / width, h), w.clamp(max=width)
        w, h = w.round().clamp(1, width).long(), h.round().clamp(1, height).long()
        top = (_rand(batch, generator) * (height - h + 1)).long()
        left = (_rand(batch, generator) * (width - w + 1)).long()
        return top, left, h, w

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        batch = _check_batch(x, "RandomResizedCrop").shape[0]
        boxes = zip(*(values.tolist() for values in self.boxes(batch, x.shape[-2], x.shape[-1], generator)))
        # One resize per sample (windows differ in size); a batch holds tens of videos, each many frames.
        return torch.stack([resize(x[b, ..., top:top + h, left:left + w], self.size)
                            for b, (top, left, h, w) in enumerate(boxes)])

    def __repr__(self) -> str:
        return f"RandomResizedCrop(size={self.size}, scale={self.scale}, ratio={self.ratio})"


class BrightnessJitter:
    """Multiply each sample by one factor drawn uniformly from ``[1 - amount, 1 + amount]``, clipped to [0, 1]
    (float images in [0, 1], before normalization)."""

    def __init__(self, amount: float = 0.2):
        if not 0 <= amount < 1:
            raise ValueError(f"amount must be in [0, 1), got {amount}")
        self.amount = float(amount)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        factor = 1 + self.amount * (2 * _rand(_check_batch(x, "BrightnessJitter").shape[0], generator) - 1)
        return (x * _per_sample(factor, x).to(x.dtype)).clamp_(0, 1)

    def __repr__(self) -> str:
        return f"BrightnessJitter(amount={self.amount})"


class ColorJitter:
    """Per sample, scale brightness, contrast and saturation by factors drawn uniformly from ``[1 - a, 1 + a]``
    and rotate the hue by an angle drawn from ``[-hue, hue]`` turns, in that order, clipped to [0, 1] (float RGB
    images in [0, 1], before normalization; on gray images only brightness and contrast apply).

    As torchvision's ColorJitter, except that its order is random and its hue shift is done in HSV: here the hue
    turns the chroma plane of YIQ (the luma stays), a linear approximation that needs no colour-space conversion.
    Draws ``rand(B)`` per enabled part from ``generator``, in the order above.
    """

    def __init__(self, brightness: float = 0.1, contrast: float = 0.1, saturation: float = 0.1, hue: float = 0.1):
        if not all(0 <= v < 1 for v in (brightness, contrast, saturation)) or not 0 <= hue <= 0.5:
            raise ValueError(f"need brightness, contrast and saturation in [0, 1) and hue in [0, 0.5], got "
                             f"{brightness}, {contrast}, {saturation}, {hue}")
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue

    @staticmethod
    def _gray(x: torch.Tensor) -> torch.Tensor:
        if x.shape[-3] == 1:
            return x
        weights = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(3, 1, 1)
        return (x * weights).sum(-3, keepdim=True)

    def _factor(self, amount: float, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return _per_sample(1 + amount * (2 * _rand(x.shape[0], generator) - 1), x).to(x.dtype)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_batch(x, "ColorJitter")
        if self.brightness:
            x = (x * self._factor(self.brightness, x, generator)).clamp(0, 1)
        if self.contrast:
            mean = self._gray(x).mean(dim=(-3, -2, -1), keepdim=True)
            x = ((x - mean) * self._factor(self.contrast, x, generator) + mean).clamp(0, 1)
        if x.shape[-3] == 3 and self.saturation:
            gray = self._gray(x)
            x = ((x - gray) * self._factor(self.saturation, x, generator) + gray).clamp(0, 1)
        if x.shape[-3] == 3 and self.hue:
            angle = _per_sample(2 * math.pi * self.hue * (2 * _rand(x.shape[0], generator) - 1), x)
            to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
                                  dtype=x.dtype, device=x.device)
            yiq = torch.einsum("ij,...jhw->...ihw", to_yiq, x)
            cos, sin = angle.cos().squeeze(-1), angle.sin().squeeze(-1)  # (B, ..., 1, 1)
            i, q = yiq[..., 1, :, :], yiq[..., 2, :, :]
            yiq = torch.stack([yiq[..., 0, :, :], i * cos - q * sin, i * sin + q * cos], dim=-3)
            x = torch.einsum("ij,...jhw->...ihw", torch.linalg.inv(to_yiq), yiq).clamp(0, 1)
        return x

    def __repr__(self) -> str:
        return (f"ColorJitter(brightness={self.brightness}, contrast={self.contrast}, saturation={self.saturation}, "
                f"hue={self.hue})")


# ---------------------------------------------------------------------------------------------------- pipelines
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


def make_video_transforms(size: int | Sequence[int],
                          stats: tuple[Sequence[float], Sequence[float]] = STATS["imagenet"], augment: bool = True,
                          flip: bool = True, channels_first_clips: bool = False) -> tuple[Compose, Compose]:
    """(training, evaluation) pipelines from uint8 video samples to a net's float input.

    Training: random crop of 70-100% of the area resized to ``size``, horizontal flip (unless ``flip`` is False:
    a mirror swaps left and right motion, the labels of :func:`rlkit.data.fixtures.make_tiny_ucf`'s ``direction``
    sets), brightness +-20% (each per video), normalization with ``stats`` (ImageNet's for 2D nets,
    :data:`KINETICS_STATS` for the 3D ones).
    Evaluation: the whole frame resized to ``size``, normalized. ``channels_first_clips`` ends both with
    :func:`to_channels_first_clips` (for :class:`rlkit.nets.video.VideoResNet`).
    """
    tail: list[Any] = [Normalize(*stats)] + ([to_channels_first_clips] if channels_first_clips else [])
    augmentation = ([RandomResizedCrop(size), *([RandomHorizontalFlip()] if flip else []), BrightnessJitter()]
                    if augment else [Resize(size)])
    return Compose([to_float, *augmentation, *tail]), Compose([to_float, Resize(size), *tail])


def make_flow_transforms(size: int | Sequence[int], augment: bool = True, flip: bool = True
                         ) -> tuple[Compose, Compose]:
    """(training, evaluation) pipelines from uint8 stacks of flow fields ``(B, ..., L, 2, H, W)`` to the temporal
    net's ``(B, ..., 2L, H, W)`` in [-1, 1] (:data:`FLOW_STATS`).

    Training: random crop of 70-100% of the area resized to ``size`` (one per stack; the flow values are kept, as
    in the two-stream papers' multi-scale crops), a horizontal flip that also negates x (unless ``flip`` is False).
    No brightness jitter: flow values are motion, not light. Evaluation: the whole field resized to ``size``.
    """
    tail: list[Any] = [Normalize(*FLOW_STATS), stack_flow]
    augmentation = ([RandomResizedCrop(size), *([FlowHorizontalFlip()] if flip else [])] if augment
                    else [Resize(size)])
    return Compose([to_float, *augmentation, *tail]), Compose([to_float, Resize(size), *tail])
