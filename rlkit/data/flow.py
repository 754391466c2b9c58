"""Optical flow for the temporal stream of two-stream networks (Simonyan and Zisserman 2014): dense Farneback flow
between consecutive frames, computed with OpenCV once per video and stored as images, then read as stacks of
flow fields.

Layout written by :func:`extract_flow` (``python -m rlkit.data extract-flow``)::

    FLOW/flow.json                               {"bound": 20.0, "method": "farneback", ...}
    FLOW/<Class>/<video name>/x_000001.jpg       horizontal flow from frame 1 to frame 2, one gray image
    FLOW/<Class>/<video name>/y_000001.jpg       vertical flow, same pair
    ...                                          T - 1 pairs for a video of T frames (.png with --format png)

Each component is clipped to ``[-bound, bound]`` pixels and quantized to uint8 as in the two-stream papers
(``q = round((f + bound) * 255 / (2 bound))``, so 0 px is about 128); :func:`dequantize` undoes it up to half a
step. Positive x points right, positive y down (image coordinates).

A sample of :class:`FlowReader` is ``(*indices.shape, 2, H, W)`` uint8 (x then y); a stack of L consecutive fields
is :class:`rlkit.data.ucf101.RandomClip` ``(L, 2, H, W)``, which the flow transforms turn into ``2L`` input channels
(:func:`rlkit.data.transforms.make_flow_transforms`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from rlkit.data.ucf101 import (
    IndexPicker,
    Sampling,
    VideoDataset,
    gather_frames,
    natural_key,
    folder_of,
    all_frames,
    extract_per_video,
    listed_sources,
)
from rlkit.errors import UserError

FLOW_BOUND = 20.0
"""Pixels: larger displacements are clipped (the two-stream papers' bound)."""
META_FILE = "flow.json"
EXTRACT_FLOW_COMMAND = "python -m rlkit.data extract-flow --data-dir {root} --out {flow}"
FARNEBACK = {"pyr_scale": 0.5, "levels": 3, "winsize": 15, "iterations": 3, "poly_n": 5, "poly_sigma": 1.2,
             "flags": 0}
"""OpenCV's documented example settings for ``calcOpticalFlowFarneback``."""


# ---------------------------------------------------------------------------------------------------- computing
def _gray(frame: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)


def farneback_flow(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Dense flow from RGB (or gray) frame ``first`` to ``second``, uint8 ``(H, W[, 3])``: float32 ``(H, W, 2)``,
    (dx, dy) per pixel of ``first`` such that it moves to ``(x + dx, y + dy)``."""
    import cv2

    a, b = (f if f.ndim == 2 else _gray(f) for f in (first, second))
    return cv2.calcOpticalFlowFarneback(a, b, None, **FARNEBACK)


def quantize(flow: np.ndarray, bound: float = FLOW_BOUND) -> np.ndarray:
    """Float pixels -> uint8: clipped to ``[-bound, bound]``, then ``round((f + bound) * 255 / (2 bound))``."""
    scaled = (np.clip(flow, -bound, bound) + bound) * (255.0 / (2 * bound))
    return np.rint(scaled).astype(np.uint8)


def dequantize(values: np.ndarray | torch.Tensor, bound: float = FLOW_BOUND) -> np.ndarray | torch.Tensor:
    """uint8 -> float pixels, the inverse of :func:`quantize` (up to half a step, ``bound / 255``)."""
    return values * (2 * bound / 255.0) - bound


def video_flow(frames: np.ndarray, bound: float = FLOW_BOUND) -> np.ndarray:
    """Flow between each pair of consecutive frames ``(T, H, W, 3)`` -> uint8 ``(T - 1, H, W, 2)``."""
    gray = [_gray(f) for f in frames]
    return np.stack([quantize(farneback_flow(a, b), bound) for a, b in zip(gray[:-1], gray[1:])])


# ---------------------------------------------------------------------------------------------------- folders
def extract_flow(root: str | Path, out: str | Path, bound: float = FLOW_BOUND, image_format: str = "jpg",
                 quality: int = 95, frames_dir: str | Path | None = None) -> int:
    """Compute the flow of every ``.avi`` under the class folders of ``root`` (or of its frames under
    ``frames_dir``) into ``out`` in the layout of this module's docstring; returns the number of videos done now.
    Folders already there are kept (an interrupted run resumes); ``out/flow.json`` records the bound, and a
    folder written with another bound is refused.

    ``image_format``: ``jpg`` (small, lossy at ``quality``) or ``png`` (lossless: exactly the quantized flow).
    """
    from PIL import Image

    if image_format not in ("jpg", "png"):
        raise UserError(f"unknown flow image format {image_format!r}: use jpg or png")
    if not bound > 0:
        raise UserError(f"--bound must be positive (pixels), got {bound}")
    out = Path(out)
    meta = {"bound": float(bound), "method": "farneback", "farneback": FARNEBACK, "format": image_format}
    if (out / META_FILE).is_file():
        old = read_flow_meta(out)
        if old["bound"] != meta["bound"]:
            raise UserError(f"{out} holds flow clipped at {old['bound']} px, not --bound {bound}: use another --out "
                            f"or --bound {old['bound']}")
    else:
        out.mkdir(parents=True, exist_ok=True)
        (out / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")
    options = {"quality": quality} if image_format == "jpg" else {}

    def write(video: Path, folder: Path) -> None:
        frames = all_frames(video, frames_dir)
        if len(frames) < 2:
            raise UserError(f"{video} has {len(frames)} frame: optical flow needs two or more")
        for number, field in enumerate(video_flow(frames, bound), start=1):
            Image.fromarray(field[..., 0]).save(folder / f"x_{number:06d}.{image_format}", **options)
            Image.fromarray(field[..., 1]).save(folder / f"y_{number:06d}.{image_format}", **options)

    return extract_per_video(root, out, write)


def read_flow_meta(flow_dir: str | Path) -> dict:
    """``flow_dir/flow.json``: the bound (pixels) and how the flow was computed."""
    path = Path(flow_dir) / META_FILE
    if not path.is_file():
        raise UserError(f"{path} not found: {flow_dir} is not a flow folder; write one with "
                        f"`{EXTRACT_FLOW_COMMAND.format(root='DATA_DIR', flow=flow_dir)}`")
    try:
        meta = json.loads(path.read_text())
        float(meta["bound"])
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{path} is damaged (no 'bound'): delete {flow_dir} and extract the flow again") from None
    return meta


def _flow_files(folder: Path) -> tuple[list[Path], list[Path]]:
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".png")), key=natural_key)
    xs, ys = [p for p in files if p.name.startswith("x_")], [p for p in files if p.name.startswith("y_")]
    if not xs or len(xs) != len(ys):
        raise UserError(f"flow folder {folder} holds {len(xs)} x_ and {len(ys)} y_ images: delete it and extract "
                        "the flow again")
    return xs, ys


def _read_gray(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("L"))
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read flow image {path} ({error}): extract the flow again") from None


class FlowReader:
    """Flow folders of :func:`extract_flow`: ``count`` is the number of flow fields (frames - 1); ``read`` gives
    uint8 ``(*indices.shape, 2, H, W)``, channel 0 the x component."""

    def count(self, source: Path) -> int:
        return len(_flow_files(source)[0])

    def read(self, source: Path, pick: IndexPicker) -> torch.Tensor:
        xs, ys = _flow_files(source)
        indices = np.asarray(pick(len(xs)))
        fields = {int(i): np.stack([_read_gray(xs[int(i)]), _read_gray(ys[int(i)])], axis=-1)
                  for i in np.unique(indices)}
        return torch.from_numpy(gather_frames(fields, indices, source)).movedim(-1, -3)


def load_ucf101_flow(root: str | Path, split: str, sampling: Sampling, fold: int, flow_dir: str | Path
                     ) -> VideoDataset:
    """The flow folders of a UCF-101 split (``flow_dir/<Class>/<video name>/``), sampled by ``sampling`` over the
    flow fields (:class:`rlkit.data.ucf101.RandomClip` of L: a stack of L consecutive fields).

    Raises:
        UserError: ``flow_dir`` holds no ``flow.json``, or a listed video has no flow folder (one line, with the
            extraction command).
    """
    read_flow_meta(flow_dir)
    fix = f"run `{EXTRACT_FLOW_COMMAND.format(root=root, flow=flow_dir)}`"
    sources, listing = listed_sources(root, split, fold, flow_dir, folder_of, Path.is_dir, "flow folder", fix)
    return VideoDataset(sources, [entry.label for entry in listing.videos], listing.classes, sampling,
                        reader=FlowReader())
