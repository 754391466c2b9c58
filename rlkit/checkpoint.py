"""Checkpoints: one ``torch.save`` dict of tensors and plain data, written atomically, read with weights_only."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import torch

from rlkit.errors import UserError

FORMAT = "rlkit-checkpoint"
VERSION = 2
"""2: keyed by job kind (``job``, ``settings``, ``config``); 1: before the job contract (read through
:func:`rlkit.jobs.upgrade`)."""
CHECKPOINT_NAME = "checkpoint.pt"


def temporary_path(path: str | Path) -> Path:
    """Where :func:`save_checkpoint` writes before renaming: one fixed name, so a killed write leaves at most one
    file behind (overwritten by the next save, removed when a run starts) instead of piling up."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp")


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` so that a crash leaves either the old file or the new one, never half.
    The file gets the usual mode (0644 under the common umask), like the run's other files."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"format": FORMAT, "version": VERSION, **payload}
    tmp = temporary_path(path)
    try:
        with open(tmp, "wb") as f:
            torch.save(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def checkpoint_path(path: str | Path) -> Path:
    """The checkpoint file for a run directory or a file path."""
    path = Path(path)
    return path / CHECKPOINT_NAME if path.is_dir() else path


def _check_crc(file: Path) -> None:
    """torch.load does not verify the zip's CRC-32s, so flipped bytes in a tensor would load as other numbers."""
    if not zipfile.is_zipfile(file):
        return  # not a zip (a text file, a truncated one): torch.load's own error says so
    try:
        with zipfile.ZipFile(file) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as error:
        damaged = f"({type(error).__name__})"
    if damaged is not None:
        raise UserError(f"{file} is corrupt (checksum mismatch in {damaged}): use an intact copy or re-run training "
                        "(train.py --resume resumes from the last good checkpoint)")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read an rlkit checkpoint safely (``weights_only=True``: no code in the file runs).

    Raises:
        UserError: missing, truncated or corrupt, or not an rlkit checkpoint; the message says what to do.
    """
    file = checkpoint_path(path)
    if not file.exists():
        where = f"no {CHECKPOINT_NAME} in directory {path}" if Path(path).is_dir() else f"no checkpoint file {file}"
        raise UserError(f"{where}: pass a run directory written by train.py or its {CHECKPOINT_NAME}")
    _check_crc(file)
    try:
        data = torch.load(file, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(
            f"{file} is not an rlkit checkpoint or holds objects that are unsafe to load ({first_line}): "
            "only load checkpoints written by rlkit's train.py"
        ) from None
    except Exception as error:  # a stranger's bytes can fail torch.load in any way (a text file: KeyError, IndexError)
        raise UserError(
            f"{file} is truncated or corrupt, or no checkpoint ({type(error).__name__}): use an intact copy or re-run "
            "training "
            "(train.py --resume resumes from the last good checkpoint)"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UserError(f"{file} is not an rlkit checkpoint (no '{FORMAT}' header): pass a file written by train.py")
    if data.get("version", 0) > VERSION:
        raise UserError(f"{file} was written by a newer rlkit (format {data['version']}): upgrade rlkit to read it")
    return data


def copy_tensors(state: Any) -> Any:
    """``state`` (nested dicts, lists and tuples) with every tensor replaced by a copy of its data, for state that
    other processes keep writing: ``torch.save`` of a tensor changing under it stores a checksum of other bytes."""
    if isinstance(state, torch.Tensor):
        return state.detach().clone()
    if isinstance(state, dict):
        return {key: copy_tensors(value) for key, value in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(copy_tensors(value) for value in state)
    return state


def non_finite_tensors(state: Any, name: str = "", skip_optimizers: bool = False) -> Iterator[tuple[str, float]]:
    """``(path, value)`` of every floating tensor in ``state`` (nested dicts and lists: network and optimizer states)
    holding a NaN or infinity, with its first such value; ``skip_optimizers`` leaves out keys naming an optimizer.
    Plain numbers are passed over: they may be sentinels (a best score of -inf), only tensors are weights."""
    if isinstance(state, torch.Tensor):
        if state.is_floating_point() or state.is_complex():
            finite = torch.isfinite(state)
            if not bool(finite.all()):
                yield name, state[~finite].flatten()[0].item()
        return
    if isinstance(state, dict):
        items: Any = state.items()
    elif isinstance(state, (list, tuple)):
        items = enumerate(state)
    else:
        return
    for key, value in items:
        if not (skip_optimizers and "optim" in str(key)):
            yield from non_finite_tensors(value, f"{name}.{key}" if name else str(key), skip_optimizers)
