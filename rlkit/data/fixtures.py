"""Tiny data sets in the official file formats and layouts, for tests and quick experiments.

Each writer produces bytes the readers of :mod:`rlkit.data` cannot tell from the real thing (IDX files, CIFAR
batches pickled as Python 2 wrote them, AVI videos in UCF-101's folders and split lists), holding a few learnable
classes, so a test exercises the same reading paths as a run on the real data.
"""

from __future__ import annotations

import gzip as gzip_lib
import math
import os
import pickle
import re
import struct
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rlkit.data.cifar import CIFAR10_CLASSES, np_reconstruct
from rlkit.data.idx import IDX_TYPES
from rlkit.data.registry import DATASETS, get_info
from rlkit.data.ucf101 import FOLDS, SPLITS_FOLDER, VIDEO_FOLDER
from rlkit.errors import UserError


# ---------------------------------------------------------------------------------------------------- IDX and CIFAR
def write_idx(path: str | Path, array: np.ndarray, gzip: bool = True) -> Path:
    """Write ``array`` as an IDX file (gzip-compressed unless ``gzip`` is False); returns the path."""
    array = np.asarray(array)
    codes = {dtype.newbyteorder("="): code for code, dtype in IDX_TYPES.items()}
    if array.dtype not in codes:
        raise ValueError(f"IDX cannot hold {array.dtype}: use one of {', '.join(d.name for d in codes)}")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"IDX holds 1 to 255 dimensions, not {array.ndim}")
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip_lib.compress(payload, mtime=0) if gzip else payload)  # mtime=0: same data, same bytes
    return path


class _Python2StylePickler(pickle._Pickler):
    """Pickles the way Python 2's cPickle wrote the official CIFAR files: byte and text strings as STRING opcodes
    (read back as bytes with ``encoding="bytes"``) and NumPy's rebuilder under its NumPy-1 name, so that generated
    files exercise the same reader paths as the real ones. Uses the pure-Python pickler, whose dispatch table can be
    extended."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_bytes(self, obj: bytes) -> None:
        size = len(obj)
        opcode = pickle.SHORT_BINSTRING + bytes([size]) if size < 256 else pickle.BINSTRING + struct.pack("<i", size)
        self.write(opcode + obj)
        self.memoize(obj)

    def save_str(self, obj: str) -> None:
        try:
            self.save_bytes(obj.encode("latin-1"))
        except UnicodeEncodeError:
            super().save_str(obj)

    def save_global(self, obj: Any, name: str | None = None) -> None:
        if obj is np_reconstruct:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
        else:
            super().save_global(obj, name)

    dispatch[bytes] = save_bytes
    dispatch[str] = save_str


def _write_python2_pickle(path: Path, content: dict[bytes, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as file:
        _Python2StylePickler(file, protocol=2).dump(content)


def _tiny_split(n: int, shape: tuple[int, int, int], templates: np.ndarray, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray]:
    """n uint8 images with balanced labels: image = its class's template + noise."""
    labels = rng.permutation(np.arange(n) % len(templates))
    images = templates[labels] + rng.normal(0.0, 16.0, size=(n, *shape))
    return np.clip(np.rint(images), 0, 255).astype(np.uint8), labels


def _tiny_templates(num_classes: int, shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """One pattern per class: a colour plus horizontal stripes of a class-specific frequency and phase.

    Colours sit on an evenly spaced grid (10 grey levels; 5 levels per channel for 100 classes), so no two classes
    share one however the seed falls. Stripes run across the width, so flips keep the class and crops barely move it.
    """
    channels, height, width = shape
    levels = int(np.ceil(num_classes ** (1 / channels) - 1e-9))
    cells = rng.permutation(levels**channels)[:num_classes]
    grid = np.stack(np.unravel_index(cells, (levels,) * channels), axis=1)
    colour = (40 + grid * (175 / max(levels - 1, 1)))[:, :, None, None]
    frequency = 1 + np.arange(num_classes) % 4
    phase = rng.uniform(0, 2 * np.pi, size=num_classes)
    rows = np.arange(height)
    stripes = 30 * np.cos(2 * np.pi * frequency[:, None] * rows[None, :] / height + phase[:, None])
    return np.broadcast_to(colour + stripes[:, None, :, None], (num_classes, channels, height, width))


def write_cifar(directory: str | Path, kind: str = "cifar10", train: int = 50, test: int = 20, seed: int = 0) -> Path:
    """Write a tiny CIFAR-10 or CIFAR-100 in the official layout (``directory/cifar-10-batches-py/data_batch_1``...)
    and pickle format, with learnable labels; returns ``directory``.

    CIFAR-100's coarse label is ``fine // 5`` (each superclass groups five classes, as in the real set); its class
    names are placeholders.
    """
    if kind not in ("cifar10", "cifar100"):
        raise UserError(f"unknown CIFAR kind {kind!r}: use cifar10 or cifar100")
    info = DATASETS[kind]
    rng = np.random.default_rng(seed)
    templates = _tiny_templates(info.num_classes, info.image_shape, rng)
    folder = Path(directory) / info.folder
    for split, count in (("train", train), ("test", test)):
        images, labels = _tiny_split(count, info.image_shape, templates, rng)
        files = info.splits[split]
        for number, rows in enumerate(np.array_split(np.arange(count), len(files)), start=1):
            what = "training" if split == "train" else "testing"
            batch: dict[bytes, Any] = {
                b"batch_label": f"{what} batch {number} of {len(files)}".encode(),
                b"data": images[rows].reshape(len(rows), -1),
                b"filenames": [f"tiny_{split}_{i:06d}.png".encode() for i in rows],
            }
            fine = [int(label) for label in labels[rows]]
            if kind == "cifar10":
                batch[b"labels"] = fine
            else:
                batch[b"fine_labels"], batch[b"coarse_labels"] = fine, [label // 5 for label in fine]
            _write_python2_pickle(folder / files[number - 1], batch)
    if kind == "cifar10":
        meta = {b"label_names": [n.encode() for n in CIFAR10_CLASSES], b"num_cases_per_batch": -(-train // 5),
                b"num_vis": 3072}
    else:
        meta = {b"fine_label_names": [f"fine_{i:02d}".encode() for i in range(100)],
                b"coarse_label_names": [f"coarse_{i:02d}".encode() for i in range(20)]}
    _write_python2_pickle(folder / info.meta_file, meta)
    return Path(directory)


def make_tiny_dataset(name: str, directory: str | Path, train: int = 200, test: int = 100, seed: int = 0) -> Path:
    """Write a tiny data set ``name`` in its official layout and format into ``directory``; returns ``directory``.

    Each class is a distinct brightness pattern plus noise, so a small net's loss falls within a few steps.
    ``load_dataset(name, directory)`` reads it back.
    """
    info = get_info(name)
    if info.format == "cifar":
        return write_cifar(directory, name, train, test, seed)
    rng = np.random.default_rng(seed)
    templates = _tiny_templates(info.num_classes, info.image_shape, rng)
    for split, count in (("train", train), ("test", test)):
        images, labels = _tiny_split(count, info.image_shape, templates, rng)
        image_file, label_file = info.splits[split]
        write_idx(Path(directory) / f"{image_file}.gz", images[:, 0])
        write_idx(Path(directory) / f"{label_file}.gz", labels.astype(np.uint8))
    return Path(directory)


# ---------------------------------------------------------------------------------------------------- UCF-101
_AVI_CODECS: dict[str, tuple[str, dict[str, str]]] = {
    # codec -> (pixel format, options). mpeg4 is what UCF-101 holds (Xvid); qscale 2 is near its best quality.
    "mpeg4": ("yuv420p", {"qscale": "2"}),
    "mjpeg": ("yuvj420p", {"qscale": "2"}),
    "ffv1": ("bgr0", {}),  # lossless
    "png": ("rgb24", {}),  # lossless
}


def write_avi(path: str | Path, frames: np.ndarray, fps: int = 25, codec: str = "mpeg4") -> Path:
    """Write uint8 ``(T, H, W, 3)`` RGB frames as an AVI file with PyAV (the file appears whole or not at all).

    ``codec``: ``mpeg4`` (UCF-101's own, lossy; even sizes), ``mjpeg`` (lossy; even sizes), or the lossless
    ``ffv1`` and ``png``.
    """
    import av

    if codec not in _AVI_CODECS:
        raise ValueError(f"unknown codec {codec!r}: use one of {', '.join(_AVI_CODECS)}")
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"expected uint8 (T, H, W, 3) frames, got shape {frames.shape}")
    pix_fmt, options = _AVI_CODECS[codec]
    height, width = frames.shape[1:3]
    if pix_fmt.endswith("420p") and (height % 2 or width % 2):
        raise ValueError(f"{codec} needs even frame sizes, got {height}x{width}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".avi")
    os.close(handle)
    try:
        with av.open(temp, mode="w", format="avi") as container:
            stream = container.add_stream(codec, rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
            stream.options = dict(options)
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())
        os.replace(temp, path)
    finally:
        Path(temp).unlink(missing_ok=True)
    return path


MOTIONS = ("appearance", "direction")
_DIRECTION_NAMES = {4: ("Right", "Up", "Left", "Down"),
                    8: ("Right", "UpRight", "Up", "UpLeft", "Left", "DownLeft", "Down", "DownRight")}


def direction_velocity(label: int, num_classes: int, speed: float) -> tuple[float, float]:
    """(rows, columns) moved per frame by class ``label`` of ``num_classes`` directions, evenly spaced
    counter-clockwise from "right" (rows grow downwards)."""
    angle = 2 * math.pi * label / num_classes
    return -speed * math.sin(angle), speed * math.cos(angle)


def _class_names(classes: int | Sequence[str], motion: str) -> tuple[str, ...]:
    if not isinstance(classes, (int, np.integer)):
        names = tuple(classes)
        if any(not re.fullmatch(r"[A-Za-z0-9]+", n) for n in names) or len(set(names)) != len(names):
            raise ValueError(f"class names must be distinct and alphanumeric (they go into v_<Class>_gNN_cNN.avi), "
                             f"got {names}")
        return names
    if motion == "direction":
        return tuple(f"Move{name}" for name in _DIRECTION_NAMES.get(int(classes), ())) or tuple(
            f"Move{round(360 * k / classes):03d}Deg" for k in range(classes))
    return tuple(f"Scene{k + 1:02d}" for k in range(classes))


@dataclass(frozen=True)
class _BlobLook:
    """How one video's blob looks: colours, a grating texture in a Gaussian envelope."""

    background: np.ndarray
    colour: np.ndarray
    sigma: float
    frequency: float
    orientation: float
    phase: float


def _random_look(rng: np.random.Generator, size: tuple[int, int], background: np.ndarray | None = None) -> _BlobLook:
    if background is None:
        background = np.full(3, rng.uniform(60, 110))
    return _BlobLook(background=np.asarray(background, dtype=np.float64), colour=rng.uniform(170, 250, size=3),
                     sigma=min(size) / 8, frequency=rng.uniform(1.5, 3.0) / (min(size) / 4),
                     orientation=rng.uniform(0, math.pi), phase=rng.uniform(0, 2 * math.pi))


def render_blob_video(size: tuple[int, int], frames: int, start: tuple[float, float],
                      velocity: tuple[float, float], look: _BlobLook) -> np.ndarray:
    """A textured blob gliding over a flat background: uint8 ``(frames, H, W, 3)``.

    The frame is a torus: the blob leaving one side enters at the other, so its position in any one frame is as
    likely anywhere for every direction of motion (a single frame says nothing about the direction). The texture
    moves with the blob, at sub-pixel positions.
    """
    height, width = size
    t = np.arange(frames)[:, None, None]
    rows, cols = np.arange(height)[None, :, None], np.arange(width)[None, None, :]
    cy, cx = start[0] + velocity[0] * t, start[1] + velocity[1] * t
    dy = (rows - cy + height / 2) % height - height / 2  # shortest offset on the torus
    dx = (cols - cx + width / 2) % width - width / 2
    envelope = np.exp(-(dx**2 + dy**2) / (2 * look.sigma**2))
    along = dx * math.cos(look.orientation) + dy * math.sin(look.orientation)
    texture = 0.4 + 0.6 * (0.5 + 0.5 * np.cos(2 * math.pi * look.frequency * along + look.phase))
    weight = (envelope * texture)[..., None]
    video = look.background + weight * (look.colour - look.background)
    return np.clip(np.rint(video), 0, 255).astype(np.uint8)


def _scene_colours(num_classes: int) -> np.ndarray:
    """A distinct background colour per class: hues around the circle, alternating two brightness levels."""
    hue = np.arange(num_classes) / num_classes
    value = np.where(np.arange(num_classes) % 2 == 0, 150.0, 90.0)
    channel = np.stack([np.cos(2 * np.pi * (hue - shift)) for shift in (0, 1 / 3, 2 / 3)], axis=1)
    return value[:, None] * (1 + 0.5 * channel)


def fold_test_groups(fold: int) -> range:
    """The groups (``_gNN_``) whose videos form the test list of split ``fold``: 1-7, 8-14 or 15-21."""
    return range(7 * (fold - 1) + 1, 7 * fold + 1)


def make_tiny_ucf(root: str | Path, classes: int | Sequence[str] = 4, videos_per_class: int = 6, frames: int = 16,
                  size: int | Sequence[int] = 32, seed: int = 0, motion: str = "appearance", codec: str = "mpeg4",
                  fps: int = 25, speed: float | None = None) -> Path:
    """Write a tiny UCF-101 in the official layout: ``root/UCF-101/<Class>/v_<Class>_gNN_cNN.avi`` (real AVI
    files, PyAV) and ``root/ucfTrainTestlist/`` with classInd.txt and the three train/test splits; returns ``root``.

    The videos of a class spread over the 25 groups as UCF-101's do (video i in group ``1 + 25 i // n``), and
    split f tests on groups ``7(f-1)+1 .. 7f``, so every split tests on about a third of each class.

    ``motion``:
        * ``appearance``: each class has its own background colour, with a blob moving any way: one frame is
          enough to classify.
        * ``direction``: every video shows the same kind of textured blob, on a flat grey, moving in one of
          K directions (the class: evenly spaced angles, counter-clockwise from "right"). Video i of every class
          shares its start position, look and group, so classes differ only in the motion, and the frame wraps
          around, so the blob's position in one frame is uniform whatever the class: a single frame carries no
          label (a frame model stays at chance) while a clip model sees the direction.

    ``speed`` (pixels per frame) defaults to the frame side over ``frames`` (at least 1): the blob crosses the frame
    about once per video.
    """
    if motion not in MOTIONS:
        raise ValueError(f"unknown motion {motion!r}: use one of {', '.join(MOTIONS)}")
    root = Path(root)
    shape = (int(size), int(size)) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
    names = _class_names(classes, motion)
    speed = speed if speed is not None else max(1.0, min(shape) / frames)
    rng = np.random.default_rng(seed)
    groups: list[tuple[int, int]] = []
    for i in range(videos_per_class):
        group = 1 + 25 * i // videos_per_class
        groups.append((group, 1 + sum(g == group for g, _ in groups)))
    shared = [(rng.uniform(0, shape[0]), rng.uniform(0, shape[1]), _random_look(rng, shape))
              for _ in range(videos_per_class)]
    scene = _scene_colours(len(names))
    listed: list[tuple[str, int, int]] = []
    for label, name in enumerate(names):
        for i, (group, clip) in enumerate(groups):
            if motion == "direction":
                y, x, look = shared[i]
                velocity = direction_velocity(label, len(names), speed)
            else:
                y, x = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
                look = _random_look(rng, shape, background=scene[label])
                angle = rng.uniform(0, 2 * math.pi)
                velocity = (speed * math.sin(angle), speed * math.cos(angle))
            video = render_blob_video(shape, frames, (y, x), velocity, look)
            file = f"{name}/v_{name}_g{group:02d}_c{clip:02d}.avi"
            write_avi(root / VIDEO_FOLDER / file, video, fps, codec)
            listed.append((file, label, group))
    lists = root / SPLITS_FOLDER
    lists.mkdir(parents=True, exist_ok=True)
    # The official lists end lines with \r\n; so do these, to keep the reader honest.
    (lists / "classInd.txt").write_bytes("".join(f"{k + 1} {n}\r\n" for k, n in enumerate(names)).encode())
    for fold in FOLDS:
        test = fold_test_groups(fold)
        train_lines = "".join(f"{f} {k + 1}\r\n" for f, k, g in listed if g not in test)
        test_lines = "".join(f"{f}\r\n" for f, _, g in listed if g in test)
        (lists / f"trainlist{fold:02d}.txt").write_bytes(train_lines.encode())
        (lists / f"testlist{fold:02d}.txt").write_bytes(test_lines.encode())
    return root
