"""rlkit: deep reinforcement learning (and the supervised work around it) in PyTorch.

``rlkit.make(agent, env, **options)`` and ``rlkit.load(path)`` give a :class:`rlkit.api.Model` that learns, saves and
predicts (see :mod:`rlkit.api`); ``rlkit.Callback`` and ``rlkit.StopOnReward`` hook into its training. Imported on
first use, so that ``import rlkit`` stays light.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {"make": "rlkit.api", "load": "rlkit.api", "Model": "rlkit.api", "Callback": "rlkit.loop",
         "StopOnReward": "rlkit.loop", "make_env": "rlkit.envs"}
__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rlkit' has no attribute {name!r}")
