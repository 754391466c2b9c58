"""Per-frame video features computed once by a frame net, for a sequence model over them (the course's earlier
assignment 6: an LSTM over per-frame features of a pretrained net).

Layout written by :func:`extract_features` (``python -m rlkit.data extract-features --net frame-resnet50``)::

    FEATURES/features.json                       {"net": "frame-resnet50", "dim": 2048, "stride": 1, ...}
    FEATURES/<Class>/<video name>.npy            float32 (T, dim): row t is the features of frame 1 + t * stride

A sample of :class:`FeatureReader` is float32 ``(*indices.shape, dim)``; a sequence of T feature vectors is
:class:`rlkit.data.ucf101.RandomClip` ``(T, dim)``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlkit.data.ucf101 import IndexPicker, Sampling, VideoDataset, all_frames, extract_per_video, listed_sources
from rlkit.errors import UserError

META_FILE = "features.json"
EXTRACT_FEATURES_COMMAND = "python -m rlkit.data extract-features --net frame-resnet50 --data-dir {root} --out {out}"


def read_feature_meta(features_dir: str | Path) -> dict[str, Any]:
    """``features_dir/features.json``: the width ``dim`` and what computed the features."""
    path = Path(features_dir) / META_FILE
    if not path.is_file():
        raise UserError(f"{path} not found: {features_dir} is not a feature folder; write one with "
                        f"`{EXTRACT_FEATURES_COMMAND.format(root='DATA_DIR', out=features_dir)}`")
    try:
        meta = json.loads(path.read_text())
        if int(meta["dim"]) < 1:
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{path} is damaged (no positive 'dim'): delete {features_dir} and extract the features "
                        "again") from None
    return meta


@torch.no_grad()
def extract_features(root: str | Path, out: str | Path, encode: Callable[[torch.Tensor], torch.Tensor],
                     transform: Callable[[torch.Tensor], torch.Tensor], meta: dict[str, Any], batch_size: int = 64,
                     stride: int = 1, frames_dir: str | Path | None = None, device: torch.device | str = "cpu"
                     ) -> int:
    """Encode every ``stride``-th frame of every ``.avi`` under the class folders of ``root`` (or of its frames
    under ``frames_dir``) into ``out`` in the layout of this module's docstring; returns the number of videos done
    now. Files already there are kept (an interrupted run resumes).

    Args:
        encode: float frames ``(B, C, H, W)`` on ``device`` -> features ``(B, dim)`` (a frame net's ``features``,
            in eval mode).
        transform: uint8 frames ``(1, T, C, H, W)`` -> what ``encode`` takes (resize and normalization).
        meta: written to ``features.json`` with ``dim`` and ``stride`` (say which net and weights).
    """
    if batch_size < 1 or stride < 1:
        raise UserError(f"--batch-size and --stride must be positive, got {batch_size} and {stride}")
    out, device = Path(out), torch.device(device)
    dims: list[int] = []

    def write(video: Path, file: Path) -> None:
        frames = torch.from_numpy(all_frames(video, frames_dir)[::stride]).movedim(-1, -3)
        parts = [encode(transform(chunk[None].to(device))[0]).float().cpu() for chunk in frames.split(batch_size)]
        features = torch.cat(parts).numpy()
        dims.append(features.shape[1])
        np.save(file, features)

    done = extract_per_video(root, out, write, suffix=".npy")
    if dims or not (out / META_FILE).is_file():
        # Files kept from an interrupted run have the width of the first one.
        dim = dims[0] if dims else FeatureReader().count_and_dim(next(out.glob("*/*.npy")))[1]
        (out / META_FILE).write_text(json.dumps({**meta, "dim": dim, "stride": stride}, indent=1) + "\n")
    return done


class FeatureReader:
    """Feature files of :func:`extract_features`: ``read`` gives float32 ``(*indices.shape, dim)``."""

    def _load(self, source: Path) -> np.ndarray:
        try:
            features = np.load(source, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as error:
            raise UserError(f"cannot read feature file {source} ({error}): extract the features again") from None
        if features.ndim != 2 or len(features) == 0:
            raise UserError(f"feature file {source} holds shape {features.shape}, not (frames, dim): extract the "
                            "features again")
        return features

    def count(self, source: Path) -> int:
        return len(self._load(source))

    def count_and_dim(self, source: Path) -> tuple[int, int]:
        """(rows, width) of a feature file."""
        return tuple(self._load(source).shape)

    def read(self, source: Path, pick: IndexPicker) -> torch.Tensor:
        features = self._load(source)
        indices = np.minimum(np.asarray(pick(len(features))), len(features) - 1)
        return torch.from_numpy(np.ascontiguousarray(features[indices], dtype=np.float32))


def load_ucf101_features(root: str | Path, split: str, sampling: Sampling, fold: int, features_dir: str | Path
                         ) -> VideoDataset:
    """The feature files of a UCF-101 split (``features_dir/<Class>/<video name>.npy``), sampled by ``sampling``
    over their rows.

    Raises:
        UserError: ``features_dir`` holds no ``features.json``, or a listed video has no feature file.
    """
    read_feature_meta(features_dir)
    fix = f"run `{EXTRACT_FEATURES_COMMAND.format(root=root, out=features_dir)}`"
    sources, listing = listed_sources(root, split, fold, features_dir,
                                      lambda d, name: d / Path(name).with_suffix(".npy"), Path.is_file,
                                      "feature file", fix)
    return VideoDataset(sources, [entry.label for entry in listing.videos], listing.classes, sampling,
                        reader=FeatureReader())
