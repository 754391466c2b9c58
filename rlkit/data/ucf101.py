"""UCF-101 action recognition data (course assignment 6): the official split lists and videos, frame sampling,
a data set of videos with labels, and batches of it for evaluation.

The layout read, as the official archives extract (``UCF101.rar`` and ``UCF101TrainTestSplits-RecognitionTask.zip``
from https://www.crcv.ucf.edu/data/UCF101.php)::

    ROOT/ucfTrainTestlist/classInd.txt       "1 ApplyEyeMakeup" ... (1-based)
    ROOT/ucfTrainTestlist/trainlist01.txt    "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1" (splits 01-03)
    ROOT/ucfTrainTestlist/testlist01.txt     "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi" (class from the folder)
    ROOT/UCF-101/ApplyEyeMakeup/*.avi        (or the class folders directly in ROOT)

Decoding an .avi on the fly (PyAV) costs more than a training step of a small net, so frames can instead be read
from pre-extracted folders, ``FRAMES/<Class>/<video name without .avi>/`` holding numbered JPEG or PNG files (read
with Pillow), written by :func:`extract_frames`::

    python -m rlkit.data extract-frames --data-dir data/ucf101 --out data/ucf101-frames

Samples are uint8 tensors ``(*sampling shape, C, H, W)``: one frame ``(C, H, W)`` (:class:`RandomFrame`), evenly
spaced frames ``(N, C, H, W)`` (:class:`EvenFrames`), a clip ``(T, C, H, W)`` (:class:`RandomClip`), evenly spaced
clips ``(N, T, C, H, W)`` (:class:`EvenClips`). The transforms of :mod:`rlkit.data.transforms` take a batch of them
(one more leading dimension) and draw one crop, flip and brightness per video, so a clip stays one coherent piece
of film. Tiny data sets in this layout come from :func:`rlkit.data.fixtures.make_tiny_ucf`.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np
import torch

from rlkit.data.transforms import resize
from rlkit.errors import UserError

UCF101_URL = "https://www.crcv.ucf.edu/data/UCF101.php"
SPLITS_FOLDER = "ucfTrainTestlist"
VIDEO_FOLDER = "UCF-101"
FOLDS = (1, 2, 3)
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
EXTRACT_COMMAND = "python -m rlkit.data extract-frames --data-dir {root} --out {frames}"


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
def natural_key(path: Path) -> tuple:
    """Sort key of numbered files: frame_2 before frame_10, whatever the zero padding."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name))


def list_frame_files(folder: str | Path) -> list[Path]:
    """The JPEG/PNG files of a frame folder in frame order (numbers in the names compared as numbers)."""
    folder = Path(folder)
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES), key=natural_key)


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read frame {path} ({error}): extract the video's frames again") from None


IndexPicker = Callable[[int], np.ndarray]
"""Given a video's frame count, the frame indices to read (any shape)."""


def gather_frames(frames: dict[int, np.ndarray], indices: np.ndarray, where: Path) -> np.ndarray:
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
    return gather_frames(frames, indices, folder), len(files)


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
    return gather_frames(frames, indices, path), count


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
    return resize(frames.float(), size).round_().clamp_(0, 255).to(torch.uint8)


class SampleReader(Protocol):
    """How a data set's sources (a video file, a folder of frames or of optical flow, a feature file) are read."""

    def count(self, source: Path) -> int:
        """Frames (or flow fields, or feature vectors) of ``source``."""
        ...

    def read(self, source: Path, pick: IndexPicker) -> torch.Tensor:
        """Items ``pick(n)`` of ``source``: ``(*indices.shape, C, H, W)`` pictures or ``(*indices.shape, D)``
        feature vectors."""
        ...


class MediaReader:
    """Video files (decoded with PyAV) and frame folders (JPEG or PNG files), told apart by being a folder:
    uint8 RGB ``(*indices.shape, 3, H, W)``."""

    def count(self, source: Path) -> int:
        return len(list_frame_files(source)) if source.is_dir() else video_frame_count(source)

    def read(self, source: Path, pick: IndexPicker) -> torch.Tensor:
        frames, _ = read_frame_folder(source, pick) if source.is_dir() else read_video(source, pick)
        return torch.from_numpy(frames).movedim(-1, -3)


MEDIA = MediaReader()


class VideoDataset:
    """Videos (files or frame folders, or what ``reader`` reads) with labels; ``get(index, generator)`` ->
    (tensor, label).

    Args:
        sources: per video, a video file or a frame folder (or a source of ``reader``).
        labels: per video, its 0-based class.
        classes: class names, indexed by label.
        sampling: which frames make a sample (:class:`RandomFrame`, :class:`EvenFrames`, :class:`RandomClip`,
            :class:`EvenClips`).
        size: ``(H, W)`` to resize every frame to when read (e.g. ``(128, 171)`` for the 3D nets' 112x112 crops),
            or None to keep it (UCF-101: 240x320).
        reader: how a source is read (:data:`MEDIA`: video files and frame folders; optical flow and features have
            their own, in :mod:`rlkit.data.flow` and :mod:`rlkit.data.features`).
    """

    def __init__(self, sources: Sequence[Path], labels: Sequence[int], classes: Sequence[str], sampling: Sampling,
                 size: tuple[int, int] | None = None, reader: SampleReader = MEDIA):
        if len(sources) != len(labels):
            raise ValueError(f"{len(sources)} sources but {len(labels)} labels")
        self.sources = [Path(s) for s in sources]
        self.labels = np.asarray(labels, dtype=np.int64)
        self.classes = tuple(classes)
        self.sampling, self.size, self.reader = sampling, (tuple(size) if size else None), reader

    def __len__(self) -> int:
        return len(self.sources)

    def with_sampling(self, sampling: Sampling) -> VideoDataset:
        """The same videos, sampled another way."""
        return VideoDataset(self.sources, self.labels, self.classes, sampling, self.size, self.reader)

    def subset(self, rows: Sequence[int]) -> VideoDataset:
        """The videos at ``rows``, sampled and read as these are."""
        rows = np.asarray(rows, dtype=np.int64)
        return VideoDataset([self.sources[i] for i in rows], self.labels[rows], self.classes, self.sampling,
                            self.size, self.reader)

    def num_frames(self, index: int) -> int:
        """Frames of video ``index``."""
        return self.reader.count(self.sources[index])

    def read(self, index: int, pick: IndexPicker) -> torch.Tensor:
        """Frames ``pick(n)`` of video ``index``: ``(*indices.shape, C, H, W)`` (uint8 for frames)."""
        tensor = self.reader.read(self.sources[index], pick)
        return _resize_uint8(tensor, self.size) if self.size else tensor.contiguous()

    def get(self, index: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, int]:
        """Sample ``index``: (``(*sampling shape, C, H, W)``, label). Random frame positions come from
        ``generator`` (the global one if None)."""
        return self.read(index, lambda n: self.sampling.indices(n, generator)), int(self.labels[index])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.get(index)


def listed_sources(root: str | Path, split: str, fold: int, folder: str | Path, locate: Callable[[Path, str], Path],
                   exists: Callable[[Path], bool], what: str, fix: str) -> tuple[list[Path], UCF101Split]:
    """Where each video of a split list is under ``folder`` (``locate(folder, "Class/v_x.avi")``), every one
    checked with ``exists``: (paths, the split).

    Raises:
        UserError: one line naming the first ``what`` missing, how many more are, and ``fix``.
    """
    listing = read_split(root, split, fold)
    sources = [locate(Path(folder), entry.name) for entry in listing.videos]
    missing = [s for s in sources if not exists(s)]
    if missing:
        more = f" (and {len(missing) - 1} more of the {len(sources)} listed)" if len(missing) > 1 else ""
        raise UserError(f"UCF-101 {split} split {fold}: {what} {missing[0]} not found{more}: {fix}")
    return sources, listing


def folder_of(folder: Path, name: str) -> Path:
    """Where a listed video (``Class/v_x.avi``) has its folder of frames or flow under ``folder``."""
    return folder / Path(name).with_suffix("")


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
    if frames_dir is not None:
        fix = (f"expected {frames_dir}/<Class>/<video name>/ of numbered .jpg or .png frames: run "
               f"`{EXTRACT_COMMAND.format(root=root, frames=frames_dir)}`")
        sources, listing = listed_sources(root, split, fold, frames_dir, folder_of, Path.is_dir, "frame folder",
                                          fix)
    else:
        sources, listing = listed_sources(root, split, fold, video_folder(root), lambda d, name: d / name,
                                          Path.is_file, "video", _layout(root))
    return VideoDataset(sources, [entry.label for entry in listing.videos], listing.classes, sampling, size)



# ---------------------------------------------------------------------------------------------------- batches
def collate_videos(samples: list[tuple[torch.Tensor, int]], device: torch.device | str = "cpu"
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sample, label)`` pairs of :meth:`VideoDataset.get` -> (stacked samples, int64 labels ``(B,)``) on
    ``device``."""
    x = torch.stack([s for s, _ in samples]).to(device)
    return x, torch.tensor([label for _, label in samples], dtype=torch.int64, device=device)


def iterate_videos(data: VideoDataset, batch_size: int, transform: Callable[..., torch.Tensor] | None = None,
                   device: torch.device | str = "cpu", seed: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Every video once, in order, in batches (the last one may be smaller): for evaluation. Any randomness of
    the sampling or transform is drawn from a generator seeded with (seed, batch number)."""
    generator, device = torch.Generator(), torch.device(device)
    for number, start in enumerate(range(0, len(data), batch_size)):
        generator.manual_seed(seed * 1_000_003 + number)
        rows = range(start, min(start + batch_size, len(data)))
        x, y = collate_videos([data.get(i, generator) for i in rows], device)
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



# ---------------------------------------------------------------------------------------------------- frame folders
def extract_per_video(root: str | Path, out: str | Path, write: Callable[[Path, Path], None], suffix: str = "") -> int:
    """For every ``.avi`` under the class folders of ``root``, ``write(video, temp)`` writes what belongs to it into
    ``temp``, which is renamed to ``out/<Class>/<video name><suffix>`` when complete: a folder (``suffix`` empty:
    ``temp`` exists, empty) or a file (``temp`` is a path to create). What is already there is kept, so an
    interrupted run resumes. Returns the number of videos done now."""
    root, out = Path(root), Path(out)
    videos = sorted(video_folder(root).glob("*/*.avi"))
    if not videos:
        raise UserError(f"no videos found under {video_folder(root)}: {_layout(root)}")
    done = 0
    for video in videos:
        target = out / video.parent.name / (video.stem + suffix)
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if suffix:
            handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{video.stem}.", suffix=suffix)
            os.close(handle)
            temp = Path(name)
        else:
            temp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{video.stem}."))
        try:
            write(video, temp)
            temp.rename(target)
            done += 1
        finally:
            if temp.is_dir():
                shutil.rmtree(temp)
            elif temp.exists():
                temp.unlink()
    return done


def all_frames(video: Path, frames_dir: str | Path | None = None) -> np.ndarray:
    """Every frame of ``video``, uint8 ``(T, H, W, 3)`` RGB: decoded, or read from its folder under ``frames_dir``
    (``frames_dir/<Class>/<video name>/``, as :func:`extract_frames` writes) when given."""
    if frames_dir is None:
        return decode_video(video)
    folder = Path(frames_dir) / video.parent.name / video.stem
    if not folder.is_dir():
        command = EXTRACT_COMMAND.format(root=video.parent.parent, frames=frames_dir)
        raise UserError(f"frame folder {folder} not found: run `{command}` first, or leave out --frames-dir to decode "
                        "the videos")
    return read_frame_folder(folder, np.arange)[0]


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
    options = {"quality": quality} if image_format == "jpg" else {}

    def write(video: Path, folder: Path) -> None:
        for number, frame in enumerate(decode_video(video), start=1):
            Image.fromarray(frame).save(folder / f"frame_{number:06d}.{image_format}", **options)

    return extract_per_video(root, out, write)
