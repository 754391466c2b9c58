"""Data sets in their official file formats, their download and verification, transforms for image batches and
clips, and tiny format-exact data sets for tests.

* :mod:`rlkit.data.idx`, :mod:`rlkit.data.cifar`: readers of MNIST's IDX files and CIFAR's pickled batches.
* :mod:`rlkit.data.registry`: the image data sets (``DATASETS``), :func:`load_dataset`, :func:`verify`,
  :func:`download`.
* :mod:`rlkit.data.ucf101`: UCF-101's split lists, videos and frame folders, frame sampling, :class:`VideoDataset`.
* :mod:`rlkit.data.flow`: Farneback optical flow, stored quantized per video, read as stacks of flow fields.
* :mod:`rlkit.data.features`: per-frame features of a frame net, one array per video.
* :mod:`rlkit.data.transforms`: one transform library for image batches ``(B, C, H, W)`` and clips
  ``(B, ..., C, H, W)`` (imported as a module: ``from rlkit.data import transforms as T``).
* :mod:`rlkit.data.fixtures`: writers of tiny data sets in the official formats.
* ``python -m rlkit.data``: download, verify, extract-frames, extract-flow, extract-features, make-tiny.

Modules inside this package import from each other's submodules, never from this file, and nothing here imports
the learners, agents, sources or jobs that use the data.
"""

from rlkit.data.cifar import CIFAR10_CLASSES, read_cifar_pickle
from rlkit.data.fixtures import (
    MOTIONS, direction_velocity, fold_test_groups, make_tiny_dataset, make_tiny_ucf, render_blob_video, write_avi,
    write_cifar, write_idx,
)
from rlkit.data.idx import read_idx
from rlkit.data.registry import (
    DATASETS, DOWNLOAD_COMMAND, ArrayDataset, DatasetInfo, LabelSet, download, get_info, load_dataset, md5_file,
    verify,
)
from rlkit.data.ucf101 import (
    EXTRACT_COMMAND, FOLDS, FRAME_SUFFIXES, SPLITS_FOLDER, UCF101_URL, VIDEO_FOLDER, EvenClips, EvenFrames,
    IndexPicker, RandomClip, RandomFrame, Sampling, UCF101Split, VideoDataset, VideoEntry, collate_videos,
    decode_video, evenly_spaced, extract_frames, iterate_videos, list_frame_files, load_ucf101, predict_videos,
    read_class_index, read_frame_folder, read_split, read_video, video_folder, video_frame_count,
)

__all__ = [
    "ArrayDataset", "CIFAR10_CLASSES", "DATASETS", "DOWNLOAD_COMMAND", "DatasetInfo", "EXTRACT_COMMAND",
    "EvenClips", "EvenFrames", "FOLDS", "FRAME_SUFFIXES", "IndexPicker", "LabelSet", "MOTIONS", "RandomClip",
    "RandomFrame", "SPLITS_FOLDER", "Sampling", "UCF101Split", "UCF101_URL", "VIDEO_FOLDER", "VideoDataset",
    "VideoEntry", "collate_videos", "decode_video", "direction_velocity", "download", "evenly_spaced",
    "extract_frames", "fold_test_groups", "get_info", "iterate_videos", "list_frame_files", "load_dataset",
    "load_ucf101", "make_tiny_dataset", "make_tiny_ucf", "md5_file", "predict_videos", "read_cifar_pickle",
    "read_class_index", "read_frame_folder", "read_idx", "read_split", "read_video", "render_blob_video", "verify",
    "video_folder", "video_frame_count", "write_avi", "write_cifar", "write_idx",
]
