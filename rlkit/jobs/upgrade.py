"""Older checkpoint formats read as the current one (2, keyed by job kind)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlkit.checkpoint import load_checkpoint
from rlkit.errors import UserError
from rlkit.jobs.catalog import NETS


DROPPED_IN_V2 = {"trpo": ("ent_coef", "vf_coef", "adam_eps"), "a3c": ("normalize_obs", "normalize_reward", "adam_eps")}
"""Config fields a version-1 agent carried but never used (TRPO ignored them, A3C refused any but the default); the
configs no longer have them."""


def upgrade(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint in the current format: version-1 files (every run before the job contract) are renamed key
    by key; their settings, configs, learner and source states load as they are."""
    if checkpoint.get("version") != 1:
        return checkpoint
    old = dict(checkpoint)
    kind = old.pop("kind", None)
    if kind == "agent":
        agent = old.pop("agent", None)  # also in the settings
        config = old.pop("agent_config", None)
        if isinstance(config, dict):
            config = {k: v for k, v in config.items() if k not in DROPPED_IN_V2.get(agent, ())}
        old["config"] = config
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
