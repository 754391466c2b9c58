"""Older checkpoint formats read as the current one (2, keyed by job kind)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlkit.checkpoint import load_checkpoint
from rlkit.errors import UserError
from rlkit.jobs.catalog import NETS


def upgrade(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint in the current format: version-1 files (every run before the job contract) are renamed key
    by key; their settings, configs, learner and source states load as they are."""
    if checkpoint.get("version") != 1:
        return checkpoint
    old = dict(checkpoint)
    kind = old.pop("kind", None)
    if kind == "agent":
        old.pop("agent", None)  # also in the settings
        old["config"] = old.pop("agent_config", None)
        old["job"] = "agent"
    elif kind == "supervised":
        net = old.pop("net", None)
        old.pop("task", None)
        if net not in NETS:
            raise UserError(f"this version-1 checkpoint holds an unknown net {net!r}: pass one written by train.py")
        old["job"] = NETS[net].job
    else:
        raise UserError(f"this version-1 checkpoint holds an unknown kind of run {kind!r}: pass one written by "
                        "train.py")
    old["version"] = 2
    return old


def read_checkpoint(path: str | Path, map_location: str = "cpu") -> dict[str, Any]:
    """:func:`rlkit.checkpoint.load_checkpoint`, upgraded to the current format."""
    return upgrade(load_checkpoint(path, map_location))
