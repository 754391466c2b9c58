"""UCF-101 action recognition data (course assignment 6): the official split lists and videos, frame sampling,
video augmentation, a worker-free batch source, and tiny data sets in the same layout for tests.

The layout read, as the official archives extract (``UCF101.rar`` and ``UCF101TrainTestSplits-RecognitionTask.zip``
from https://www.crcv.ucf.edu/data/UCF101.php)::

    ROOT/ucfTrainTestlist/classInd.txt       "1 ApplyEyeMakeup" ... (1-based)
    ROOT/ucfTrainTestlist/trainlist01.txt    "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1" (splits 01-03)
    ROOT/ucfTrainTestlist/testlist01.txt     "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi" (class from the folder)
    ROOT/UCF-101/ApplyEyeMakeup/*.avi        (or the class folders directly in ROOT)

Decoding an .avi on the fly (PyAV) costs more than a training step of a small net, so frames can instead be read
from pre-extracted folders, ``FRAMES/<Class>/<video name without .avi>/`` holding numbered JPEG or PNG files (read
with Pillow), written by :func:`extract_frames`::

    python -m rlkit.data.ucf101 extract-frames --data-dir data/ucf101 --out data/ucf101-frames

Samples are uint8 tensors ``(*sampling shape, C, H, W)``: one frame ``(C, H, W)`` (:class:`RandomFrame`), evenly
spaced frames ``(N, C, H, W)`` (:class:`EvenFrames`), a clip ``(T, C, H, W)`` (:class:`RandomClip`), evenly spaced
clips ``(N, T, C, H, W)`` (:class:`EvenClips`). The transforms here take a batch of them (one more leading
dimension) and draw one crop, flip and brightness per video, so a clip stays one coherent piece of film.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from rlkit.errors import UserError, run_command
from rlkit.data import transforms as T
from rlkit.supervised.sampling import ShuffledBatches

UCF101_URL = "https://www.crcv.ucf.edu/data/UCF101.php"
SPLITS_FOLDER = "ucfTrainTestlist"
VIDEO_FOLDER = "UCF-101"
FOLDS = (1, 2, 3)
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
KINETICS_STATS = ((0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989))
"""Mean and std of Kinetics-400 frames in [0, 1]: what torchvision's video weights (r3d_18, r2plus1d_18) expect."""
EXTRACT_COMMAND = "python -m rlkit.data.ucf101 extract-frames --data-dir {root} --out {frames}"


def _layout(root: Path) -> str:
    return (f"expected {root}/{SPLITS_FOLDER}/(classInd.txt, trainlist0N.txt, testlist0N.txt) and "
            f"{root}/{VIDEO_FOLDER}/<Class>/<video>.avi (or the class folders in {root} itself): download UCF101.rar "
            f"and the recognition train/test splits from {UCF101_URL} and extract both into {root}")


# ---------------------------------------------------------------------------------------------------- split lists
class VideoEntry(NamedTuple):
    """One line of a split list."""

    name: str
    """The path as listed, e.g. ``ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi``."""
    label: int
    """0-based class index (the lists' numbers minus 1)."""


@dataclass(frozen=True, eq=False)
class UCF101Split:
    """The videos of one split, as its list names them (no file is opened)."""

    root: Path
    split: str
    """train or test."""
    fold: int
    """1, 2 or 3: which of the official train/test partitions."""
    classes: tuple[str, ...]
    """Class names, indexed by label (classInd.txt order)."""
    videos: tuple[VideoEntry, ...]

    def __len__(self) -> int:
        return len(self.videos)


def _read_lines(path: Path, root: Path) -> list[str]:
    if not path.is_file():
        raise UserError(f"UCF-101: {path} not found: {_layout(root)}")
    # The official lists end lines with \r\n and some end with a blank line.
    return [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]


def read_class_index(root: str | Path) -> tuple[str, ...]:
    """Class names from ``ROOT/ucfTrainTestlist/classInd.txt`` ("1 ApplyEyeMakeup" lines), label 0 first."""
    root = Path(root)
    path = root / SPLITS_FOLDER / "classInd.txt"
    names: list[str] = []
    for number, line in enumerate(_read_lines(path, root), start=1):
        parts = line.split()
        if len(parts) != 2 or parts[0] != str(number):
            raise UserError(f"{path} line {number} reads {line!r}, not '{number} ClassName': re-download the "
                            f"split lists from {UCF101_URL}")
        names.append(parts[1])
    return tuple(names)


def read_split(root: str | Path, split: str = "train", fold: int = 1) -> UCF101Split:
    """Read ``trainlist0{fold}.txt`` or ``testlist0{fold}.txt`` with the class index.

    Training lines carry a 1-based label, which must agree with the video's class folder; test lines carry none and
    the label comes from the folder. Folder names are matched without regard to case.

    Raises:
        UserError: an unknown split or fold, a missing or malformed list (the message shows the expected layout).
    """
    root = Path(root)
    if split not in ("train", "test"):
        raise UserError(f"unknown UCF-101 split {split!r}: use train or test")
    if fold not in FOLDS:
        raise UserError(f"UCF-101 has train/test splits 1, 2 and 3, not {fold}")
    classes = read_class_index(root)
    by_name = {name.lower(): label for label, name in enumerate(classes)}
    path = root / SPLITS_FOLDER / f"{split}list{fold:02d}.txt"
    videos = []
    for number, line in enumerate(_read_lines(path, root), start=1):
        parts = line.split()
        name = parts[0].replace("\\", "/")
        folder = name.split("/")[0] if "/" in name else ""
        label = by_name.get(folder.lower())
        if label is None:
            raise UserError(f"{path} line {number}: {name!r} is not in a class folder named in classInd.txt: "
                            f"re-download the split lists from {UCF101_URL}")
        if len(parts) > 1 and parts[1] != str(label + 1):
            raise UserError(f"{path} line {number}: label {parts[1]} disagrees with folder {folder} (class "
                            f"{label + 1} in classInd.txt): re-download the split lists from {UCF101_URL}")
        videos.append(VideoEntry(name, label))
    return UCF101Split(root, split, fold, classes, tuple(videos))


def video_folder(root: str | Path) -> Path:
    """Where the class folders are: ``ROOT/UCF-101`` if it exists, else ``ROOT`` itself."""
    root = Path(root)
    return root / VIDEO_FOLDER if (root / VIDEO_FOLDER).is_dir() else root


# ---------------------------------------------------------------------------------------------------- reading frames
def _natural_key(path: Path) -> tuple:
    # frame_2 before frame_10, whatever the zero padding
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name))


def list_frame_files(folder: str | Path) -> list[Path]:
    """The JPEG/PNG files of a frame folder in frame order (numbers in the names compared as numbers)."""
    folder = Path(folder)
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES), key=_natural_key)


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read frame {path} ({error}): extract the video's frames again") from None


IndexPicker = Callable[[int], np.ndarray]
"""Given a video's frame count, the frame indices to read (any shape)."""


def _gather(frames: dict[int, np.ndarray], indices: np.ndarray, where: Path) -> np.ndarray:
    """Stack ``frames[i]`` for every index; an index past the last frame read takes the last one (a container's
    header may promise a frame or two more than it decodes)."""
    if not frames:
        raise UserError(f"{where} holds no frames: re-download or re-extract it")
    last = frames[max(frames)]
    stacked = np.stack([frames.get(int(i), last) for i in indices.reshape(-1)])
    return stacked.reshape(*indices.shape, *last.shape)


def read_frame_folder(folder: str | Path, pick: IndexPicker) -> tuple[np.ndarray, int]:
    """Frames ``pick(n)`` of a frame folder of n images: (uint8 ``(*indices.shape, H, W, 3)``, n)."""
    folder = Path(folder)
    files = list_frame_files(folder)
    if not files:
        raise UserError(f"frame folder {folder} holds no .jpg or .png files: extract the video's frames again")
    indices = np.asarray(pick(len(files)))
    frames = {int(i): _read_image(files[int(i)]) for i in np.unique(indices)}
    return _gather(frames, indices, folder), len(files)


def video_frame_count(path: str | Path) -> int:
    """Frames of a video file: the container's count, or (when it has none) its packets counted."""
    import av

    path = Path(path)
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if stream.frames > 0:
                return int(stream.frames)
            return sum(1 for packet in container.demux(stream) if packet.size)
    except (av.error.FFmpegError, IndexError) as error:
        raise UserError(f"cannot read video {path} ({error}): re-download it") from None


def read_video(path: str | Path, pick: IndexPicker) -> tuple[np.ndarray, int]:
    """Frames ``pick(n)`` of a video file of n frames, decoded with PyAV up to the last one needed:
    (uint8 ``(*indices.shape, H, W, 3)`` RGB, n)."""
    import av
    from av.video.reformatter import VideoReformatter

    path = Path(path)
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            count = int(stream.frames)
            if count <= 0:
                count = sum(1 for packet in container.demux(stream) if packet.size)
                container.seek(0)
            indices = np.asarray(pick(count))
            wanted, last = set(int(i) for i in indices.flat), int(indices.max())
            # One converter for the whole video: frame.to_ndarray(format=...) sets up a new one per frame, which
            # costs more than decoding a small frame.
            to_rgb = VideoReformatter()
            frames, previous = {}, None
            for number, frame in enumerate(container.decode(stream)):
                if number in wanted:
                    frames[number] = to_rgb.reformat(frame, format="rgb24").to_ndarray()
                previous = (number, frame)
                if number >= last:
                    break
            if previous is not None and previous[0] not in frames:  # the fallback for indices past the end
                frames[previous[0]] = to_rgb.reformat(previous[1], format="rgb24").to_ndarray()
    except (av.error.FFmpegError, IndexError) as error:
        raise UserError(f"cannot decode video {path} ({error}): re-download it") from None
    return _gather(frames, indices, path), count


def decode_video(path: str | Path) -> np.ndarray:
    """Every frame of a video file, uint8 ``(T, H, W, 3)`` RGB."""
    import av
    from av.video.reformatter import VideoReformatter

    path = Path(path)
    try:
        with av.open(str(path)) as container:
            to_rgb = VideoReformatter()
            frames = [to_rgb.reformat(frame, format="rgb24").to_ndarray()
                      for frame in container.decode(container.streams.video[0])]
    except (av.error.FFmpegError, IndexError) as error:
        raise UserError(f"cannot decode video {path} ({error}): re-download it") from None
    if not frames:
        raise UserError(f"video {path} holds no frames: re-download it")
    return np.stack(frames)


# ---------------------------------------------------------------------------------------------------- sampling
def _randint(high: int, generator: torch.Generator | None) -> int:
    return int(torch.randint(max(high, 1), (1,), generator=generator).item())


def evenly_spaced(num_frames: int, count: int) -> np.ndarray:
    """The middle frames of ``count`` equal segments, e.g. 16 frames, 4 -> 2, 6, 10, 14 (repeats when short)."""
    return np.floor((np.arange(count) + 0.5) * num_frames / count).astype(np.int64)


def _clip(start: int, length: int, step: int, num_frames: int) -> np.ndarray:
    return np.minimum(start + step * np.arange(length), num_frames - 1)  # short videos repeat their last frame


@dataclass(frozen=True)
class RandomFrame:
    """One frame, uniformly at random (training a 2D net): samples ``(C, H, W)``."""

    def indices(self, num_frames: int, generator: torch.Generator | None = None) -> np.ndarray:
        return np.asarray(_randint(num_frames, generator))


@dataclass(frozen=True)
class EvenFrames:
    """``count`` evenly spaced frames (testing a 2D net per video): samples ``(count, C, H, W)``."""

    count: int = 25

    def indices(self, num_frames: int, generator: torch.Generator | None = None) -> np.ndarray:
        return evenly_spaced(num_frames, self.count)


@dataclass(frozen=True)
class RandomClip:
    """``length`` frames ``step`` apart from a random start (training a clip model): samples ``(length, C, H, W)``."""

    length: int = 16
    step: int = 1

    def indices(self, num_frames: int, generator: torch.Generator | None = None) -> np.ndarray:
        span = (self.length - 1) * self.step + 1
        return _clip(_randint(num_frames - span + 1, generator), self.length, self.step, num_frames)


@dataclass(frozen=True)
class EvenClips:
    """``count`` clips of ``length`` frames with evenly spaced starts, the first at frame 0 and the last ending at
    the last frame (testing a clip model): samples ``(count, length, C, H, W)``."""

    length: int = 16
    count: int = 10
    step: int = 1

    def indices(self, num_frames: int, generator: torch.Generator | None = None) -> np.ndarray:
        span = (self.length - 1) * self.step + 1
        starts = np.rint(np.linspace(0, max(num_frames - span, 0), self.count)).astype(np.int64)
        return np.stack([_clip(int(s), self.length, self.step, num_frames) for s in starts])


Sampling = RandomFrame | EvenFrames | RandomClip | EvenClips


# ---------------------------------------------------------------------------------------------------- data set
def _resize_uint8(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 ``(..., C, H, W)`` -> uint8 ``(..., C, *size)``, antialiased bilinear."""
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    flat = frames.reshape(-1, *frames.shape[-3:]).float()
    out = F.interpolate(flat, size=size, mode="bilinear", align_corners=False, antialias=True)
    return out.round_().clamp_(0, 255).to(torch.uint8).reshape(*frames.shape[:-2], *size)


class VideoDataset:
    """Videos (files or frame folders) with labels; ``get(index, generator)`` -> (uint8 tensor, label).

    Args:
        sources: per video, a video file or a frame folder.
        labels: per video, its 0-based class.
        classes: class names, indexed by label.
        sampling: which frames make a sample (:class:`RandomFrame`, :class:`EvenFrames`, :class:`RandomClip`,
            :class:`EvenClips`).
        size: ``(H, W)`` to resize every frame to when read (e.g. ``(128, 171)`` for the 3D nets' 112x112 crops),
            or None to keep it (UCF-101: 240x320).
    """

    def __init__(self, sources: Sequence[Path], labels: Sequence[int], classes: Sequence[str], sampling: Sampling,
                 size: tuple[int, int] | None = None):
        if len(sources) != len(labels):
            raise ValueError(f"{len(sources)} sources but {len(labels)} labels")
        self.sources = [Path(s) for s in sources]
        self.labels = np.asarray(labels, dtype=np.int64)
        self.classes = tuple(classes)
        self.sampling, self.size = sampling, (tuple(size) if size else None)

    def __len__(self) -> int:
        return len(self.sources)

    def with_sampling(self, sampling: Sampling) -> VideoDataset:
        """The same videos, sampled another way."""
        return VideoDataset(self.sources, self.labels, self.classes, sampling, self.size)

    def num_frames(self, index: int) -> int:
        """Frames of video ``index``."""
        source = self.sources[index]
        return len(list_frame_files(source)) if source.is_dir() else video_frame_count(source)

    def read(self, index: int, pick: IndexPicker) -> torch.Tensor:
        """Frames ``pick(n)`` of video ``index``: uint8 ``(*indices.shape, C, H, W)``."""
        source = self.sources[index]
        frames, _ = read_frame_folder(source, pick) if source.is_dir() else read_video(source, pick)
        tensor = torch.from_numpy(frames).movedim(-1, -3)
        return _resize_uint8(tensor, self.size) if self.size else tensor.contiguous()

    def get(self, index: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, int]:
        """Sample ``index``: (uint8 ``(*sampling shape, C, H, W)``, label). Random frame positions come from
        ``generator`` (the global one if None)."""
        return self.read(index, lambda n: self.sampling.indices(n, generator)), int(self.labels[index])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.get(index)


def load_ucf101(root: str | Path, split: str, sampling: Sampling, fold: int = 1, frames_dir: str | Path | None = None,
                size: tuple[int, int] | None = None) -> VideoDataset:
    """The videos of a UCF-101 split, every file checked to exist.

    Args:
        root: the folder holding ``ucfTrainTestlist/`` and ``UCF-101/`` (or the class folders).
        split: train or test.
        sampling: which frames make a sample.
        fold: 1, 2 or 3.
        frames_dir: read frames from ``frames_dir/<Class>/<video name>/`` (see :func:`extract_frames`) instead of
            decoding the videos.
        size: resize frames to ``(H, W)`` when read.

    Raises:
        UserError: a missing list, video or frame folder (one line naming the first one missing, how many more are,
            the expected layout and where to get it).
    """
    root = Path(root)
    listing = read_split(root, split, fold)
    if frames_dir is not None:
        frames_dir = Path(frames_dir)
        sources = [frames_dir / Path(entry.name).with_suffix("") for entry in listing.videos]
        missing = [s for s in sources if not s.is_dir()]
        fix = (f"expected {frames_dir}/<Class>/<video name>/ of numbered .jpg or .png frames: run "
               f"`{EXTRACT_COMMAND.format(root=root, frames=frames_dir)}`")
        what = "frame folder"
    else:
        folder = video_folder(root)
        sources = [folder / entry.name for entry in listing.videos]
        missing = [s for s in sources if not s.is_file()]
        fix, what = _layout(root), "video"
    if missing:
        more = f" (and {len(missing) - 1} more of the {len(sources)} listed)" if len(missing) > 1 else ""
        raise UserError(f"UCF-101 {split} split {fold}: {what} {missing[0]} not found{more}: {fix}")
    return VideoDataset(sources, [entry.label for entry in listing.videos], listing.classes, sampling, size)


# ---------------------------------------------------------------------------------------------------- batches
class VideoBatchSource(ShuffledBatches):
    """Shuffled mini-batches of a :class:`VideoDataset` for the shared loop, read in the calling process.

    The order and seeds are :class:`rlkit.supervised.sampling.ShuffledBatches`' (as for image data sets); each
    batch's frame positions come from the batch's seeded generator too, so a resumed run sees the same batches.
    """

    def __init__(self, data: VideoDataset, batch_size: int, seed: int,
                 transform: Callable[..., torch.Tensor] | None = None, device: torch.device | str = "cpu",
                 rank: int = 0, world_size: int = 1):
        super().__init__(len(data), batch_size, seed, rank, world_size, "videos")
        self.data, self.transform, self.device = data, transform, torch.device(device)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch: (the transformed samples, int64 labels ``(B,)``), on ``device``."""
        rows, generator = self.next_rows()
        x, y = _collate([self.data.get(int(i), generator) for i in rows], self.device)
        if self.transform is not None:
            x = self.transform(x, generator=generator)
        return x, y


def _collate(samples: list[tuple[torch.Tensor, int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.stack([s for s, _ in samples]).to(device)
    return x, torch.tensor([label for _, label in samples], dtype=torch.int64, device=device)


def iterate_videos(data: VideoDataset, batch_size: int, transform: Callable[..., torch.Tensor] | None = None,
                   device: torch.device | str = "cpu", seed: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Every video once, in order, in batches (the last one may be smaller): for evaluation. Any randomness of
    the sampling or transform is drawn from a generator seeded with (seed, batch number)."""
    generator, device = torch.Generator(), torch.device(device)
    for number, start in enumerate(range(0, len(data), batch_size)):
        generator.manual_seed(seed * 1_000_003 + number)
        x, y = _collate([data.get(i, generator) for i in range(start, min(start + batch_size, len(data)))], device)
        yield (transform(x, generator=generator) if transform is not None else x), y


@torch.no_grad()
def predict_videos(score: Callable[[torch.Tensor], torch.Tensor], data: VideoDataset, batch_size: int,
                   transform: Callable[..., torch.Tensor] | None = None, device: torch.device | str = "cpu"
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Per-video scores ``(N, K)`` (e.g. ``lambda x: video_log_probs(model, x)``) and labels ``(N,)`` over a whole
    data set, as NumPy arrays for :mod:`rlkit.analysis.metrics`."""
    scores, labels = [], []
    for x, y in iterate_videos(data, batch_size, transform, device):
        scores.append(score(x).float().cpu())
        labels.append(y.cpu())
    return torch.cat(scores).numpy(), torch.cat(labels).numpy()


# ---------------------------------------------------------------------------------------------------- transforms
def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))


def _rand(count: int, generator: torch.Generator | None) -> torch.Tensor:
    # Drawn on the generator's device (CPU by default) so a batch on a GPU gets the same numbers.
    return torch.rand(count, generator=generator, device=generator.device if generator is not None else "cpu")


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Float ``(..., C, H, W)`` -> ``(..., C, *size)``, antialiased bilinear."""
    if tuple(x.shape[-2:]) == size:
        return x
    flat = x.reshape(-1, *x.shape[-3:])
    out = F.interpolate(flat, size=size, mode="bilinear", align_corners=False, antialias=True)
    return out.reshape(*x.shape[:-2], *size)


def _per_video(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return values.to(x.device).view(-1, *([1] * (x.ndim - 1)))


class RandomResizedCrop:
    """Cut from each video a window of ``scale`` (70-100%) of the frame area with an aspect ratio (width/height)
    in ``ratio``, the same window on all its frames, and resize it to ``size``. Float ``(B, ..., C, H, W)`` ->
    ``(B, ..., C, *size)``. A window that would stick out of the frame keeps its area and spans the frame's
    height (or width) instead, leaving the ratio range.

    Draws per video from ``generator``, in this order: area, log aspect ratio, top, left (each ``rand(B)``).
    """

    def __init__(self, size: int | Sequence[int], scale: tuple[float, float] = (0.7, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3)):
        if not 0 < scale[0] <= scale[1] <= 1 or not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"need 0 < scale[0] <= scale[1] <= 1 and 0 < ratio[0] <= ratio[1], got {scale}, {ratio}")
        self.size, self.scale, self.ratio = _pair(size), scale, ratio

    def boxes(self, batch: int, height: int, width: int, generator: torch.Generator | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Windows for ``batch`` videos of ``height`` x ``width`` frames: (top, left, h, w), each ``(batch,)``."""
        area = height * width * (self.scale[0] + (self.scale[1] - self.scale[0]) * _rand(batch, generator))
        low, high = math.log(self.ratio[0]), math.log(self.ratio[1])
        aspect = torch.exp(low + (high - low) * _rand(batch, generator))
        w, h = torch.sqrt(area * aspect), torch.sqrt(area / aspect)
        # A window that does not fit keeps its area: it takes the frame's whole height (or width).
        w, h = torch.where(h > height, area / height, w), h.clamp(max=height)
        h, w = torch.where(w > width, area / width, h), w.clamp(max=width)
        w, h = w.round().clamp(1, width).long(), h.round().clamp(1, height).long()
        top = (_rand(batch, generator) * (height - h + 1)).long()
        left = (_rand(batch, generator) * (width - w + 1)).long()
        return top, left, h, w

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        batch = x.shape[0]
        boxes = zip(*(values.tolist() for values in self.boxes(batch, x.shape[-2], x.shape[-1], generator)))
        # One resize per video (windows differ in size); a batch holds tens of videos, each many frames.
        return torch.stack([_resize(x[b, ..., top:top + h, left:left + w], self.size)
                            for b, (top, left, h, w) in enumerate(boxes)])

    def __repr__(self) -> str:
        return f"RandomResizedCrop(size={self.size}, scale={self.scale}, ratio={self.ratio})"


class RandomFlip:
    """Mirror left-right every frame of the videos chosen by ``rand(B) < p``."""

    def __init__(self, p: float = 0.5):
        self.p = float(p)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        chosen = _per_video(_rand(x.shape[0], generator) < self.p, x)
        return torch.where(chosen, x.flip(-1), x)

    def __repr__(self) -> str:
        return f"RandomFlip(p={self.p})"


class BrightnessJitter:
    """Multiply each video by one factor drawn uniformly from ``[1 - amount, 1 + amount]``, clipped to [0, 1]
    (float images in [0, 1], before normalization)."""

    def __init__(self, amount: float = 0.2):
        if not 0 <= amount < 1:
            raise ValueError(f"amount must be in [0, 1), got {amount}")
        self.amount = float(amount)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        factor = 1 + self.amount * (2 * _rand(x.shape[0], generator) - 1)
        return (x * _per_video(factor, x).to(x.dtype)).clamp_(0, 1)

    def __repr__(self) -> str:
        return f"BrightnessJitter(amount={self.amount})"


class ResizeFrames:
    """Resize every frame of float ``(..., C, H, W)`` to ``size`` (evaluation: the whole frame)."""

    def __init__(self, size: int | Sequence[int]):
        self.size = _pair(size)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return _resize(x, self.size)

    def __repr__(self) -> str:
        return f"ResizeFrames(size={self.size})"


class NormalizeFrames:
    """(x - mean) / std per channel of ``(..., C, H, W)``."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.ndim < 3 or x.shape[-3] != len(self.mean):
            raise ValueError(f"expected (..., {len(self.mean)}, H, W) frames, got shape {tuple(x.shape)}")
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        return (x - mean) / std

    def __repr__(self) -> str:
        return f"NormalizeFrames(mean={self.mean}, std={self.std})"


def to_channels_first_clips(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Clips ``(..., T, C, H, W)`` -> ``(..., C, T, H, W)``, the layout of the 3D ResNets."""
    return x.transpose(-4, -3)


def make_video_transforms(size: int | Sequence[int],
                          stats: tuple[Sequence[float], Sequence[float]] = T.STATS["imagenet"], augment: bool = True,
                          flip: bool = True, channels_first_clips: bool = False) -> tuple[T.Compose, T.Compose]:
    """(training, evaluation) pipelines from uint8 samples to a net's float input.

    Training: random crop of 70-100% of the area resized to ``size``, horizontal flip (unless ``flip`` is False:
    a mirror swaps left and right motion, the labels of :func:`make_tiny_ucf`'s ``direction`` sets), brightness
    +-20% (each per video), normalization with ``stats`` (ImageNet's for 2D nets, :data:`KINETICS_STATS` for the
    3D ones).
    Evaluation: the whole frame resized to ``size``, normalized. ``channels_first_clips`` ends both with
    :func:`to_channels_first_clips` (for :class:`rlkit.nets.video.VideoResNet`).
    """
    tail: list[Any] = [NormalizeFrames(*stats)] + ([to_channels_first_clips] if channels_first_clips else [])
    augmentation = ([RandomResizedCrop(size), *([RandomFlip()] if flip else []), BrightnessJitter()] if augment
                    else [ResizeFrames(size)])
    return T.Compose([T.to_float, *augmentation, *tail]), T.Compose([T.to_float, ResizeFrames(size), *tail])


# ---------------------------------------------------------------------------------------------------- writing
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


def extract_frames(root: str | Path, out: str | Path, image_format: str = "jpg", quality: int = 95) -> int:
    """Decode every ``.avi`` under the class folders of ``root`` into ``out/<Class>/<video name>/frame_000001.jpg``...
    (the layout ``load_ucf101(..., frames_dir=out)`` reads). Folders already there are kept, so an interrupted
    run resumes; each folder is written under a temporary name and renamed when complete. Returns the number of
    videos extracted now.

    ``image_format``: ``jpg`` (small; lossy at ``quality``) or ``png`` (lossless: the frames equal the decoded ones).
    """
    from PIL import Image

    if image_format not in ("jpg", "png"):
        raise UserError(f"unknown frame format {image_format!r}: use jpg or png")
    root, out = Path(root), Path(out)
    videos = sorted(video_folder(root).glob("*/*.avi"))
    if not videos:
        raise UserError(f"no videos found under {video_folder(root)}: {_layout(root)}")
    done = 0
    for video in videos:
        target = out / video.parent.name / video.stem
        if target.is_dir():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{video.stem}."))
        try:
            for number, frame in enumerate(decode_video(video), start=1):
                options = {"quality": quality} if image_format == "jpg" else {}
                Image.fromarray(frame).save(temp / f"frame_{number:06d}.{image_format}", **options)
            temp.rename(target)
            done += 1
        finally:
            if temp.exists():
                shutil.rmtree(temp)
    return done


# ---------------------------------------------------------------------------------------------------- tiny data sets
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
    root, shape = Path(root), _pair(size)
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


# ---------------------------------------------------------------------------------------------------- command line
def main(argv: Sequence[str] | None = None) -> None:
    """``extract-frames`` from UCF-101's videos, or ``make-tiny`` data sets."""
    parser = argparse.ArgumentParser(prog="python -m rlkit.data.ucf101",
                                     description="Prepare UCF-101 action recognition data.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    extract = commands.add_parser("extract-frames", help="decode every video into a folder of numbered frames")
    extract.add_argument("--data-dir", required=True, help=f"the folder holding {VIDEO_FOLDER}/ (or the class folders)")
    extract.add_argument("--out", required=True, help="where the frame folders go (<Class>/<video name>/)")
    extract.add_argument("--format", default="jpg", choices=("jpg", "png"), help="jpg (small) or png (lossless)")
    extract.add_argument("--quality", type=int, default=95, help="JPEG quality")
    tiny = commands.add_parser("make-tiny", help="write a tiny data set in UCF-101's layout")
    tiny.add_argument("--out", required=True, help="the data set's root folder")
    tiny.add_argument("--classes", type=int, default=4, help="number of classes")
    tiny.add_argument("--videos-per-class", type=int, default=12, help="videos per class")
    tiny.add_argument("--frames", type=int, default=16, help="frames per video")
    tiny.add_argument("--size", type=int, default=32, help="frame side in pixels (even)")
    tiny.add_argument("--motion", default="appearance", choices=MOTIONS, help="what tells the classes apart")
    tiny.add_argument("--seed", type=int, default=0, help="random seed")
    args = parser.parse_args(argv)
    if args.command == "extract-frames":
        count = extract_frames(args.data_dir, args.out, args.format, args.quality)
        print(f"extracted {count} videos into {args.out}")
        return
    make_tiny_ucf(args.out, args.classes, args.videos_per_class, args.frames, args.size, args.seed, args.motion)
    print(f"wrote a tiny UCF-101 ({args.motion}) into {args.out}")


if __name__ == "__main__":
    run_command(main)
