"""Short environment names -> gymnasium ids, and which family (atari, mujoco, classic) each belongs to."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, get_args

import gymnasium as gym

from rlkit.envs.custom import import_env_module, registered_by
from rlkit.errors import UserError

Family = Literal["atari", "mujoco", "other"]
"""An env family: ``atari`` (ALE games), ``mujoco``, ``other`` (classic control, toy text, Box2D, third-party ids).
Presets are per family."""
FAMILIES: tuple[Family, ...] = get_args(Family)


@dataclass(frozen=True)
class ResolvedEnv:
    """A resolved environment name."""

    env_id: str
    """The full gymnasium id, e.g. ``ALE/Breakout-v5``."""
    family: Family
    """``atari``, ``mujoco`` or ``other`` (classic control, toy text, third-party ids)."""
    game: str | None = None
    """For Atari: the ROM name ale-py uses (``breakout``, ``space_invaders``)."""


@lru_cache(maxsize=1)
def _register_ale() -> None:
    try:
        import ale_py

        gym.register_envs(ale_py)
        ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Warning)  # not its banner on every game made
    except ImportError:  # Atari is optional at import time; resolution then simply finds no ALE ids.
        pass


def _registry() -> dict[str, str]:
    """Every registered id, after registering the ALE games (read afresh: a ``module:EnvId`` import adds ids)."""
    _register_ale()
    return {env_id: env_id for env_id in gym.registry}


def _family(env_id: str) -> Family:
    spec = gym.spec(env_id)
    entry = spec.entry_point if isinstance(spec.entry_point, str) else ""
    if env_id.startswith("ALE/") or entry.startswith("ale_py"):
        return "atari"
    if "mujoco" in entry:
        return "mujoco"
    return "other"


def _short_names() -> dict[str, tuple[str, ...]]:
    """Short name -> newest full id: ``Breakout`` -> ``ALE/Breakout-v5``, ``HalfCheetah`` -> ``HalfCheetah-v5``.
    A name that an Atari game and another env share (``Blackjack``: ALE's and gymnasium's toy text) maps to both
    newest ids, Atari's first, for :func:`resolve_env` to refuse."""
    newest: dict[tuple[str, bool], tuple[int, str]] = {}
    for env_id in _registry():
        match = re.fullmatch(r"(?:ALE/)?([A-Za-z0-9_]+)-v(\d+)", env_id)
        if match is None:
            continue
        name, version = match.group(1), int(match.group(2))
        if env_id.startswith("ALE/"):
            version += 1000  # the ALE namespace wins over the legacy 'BreakoutNoFrameskip-v4' style ids
        key = (name, _family(env_id) == "atari")
        if key not in newest or version > newest[key][0]:
            newest[key] = (version, env_id)
    names: dict[str, tuple[str, ...]] = {}
    for (name, _), (_, env_id) in sorted(newest.items(), key=lambda item: not item[0][1]):  # Atari's first
        names[name] = (*names.get(name, ()), env_id)
    return names


def resolve_env(name: str) -> ResolvedEnv:
    """Resolve a short name (``Breakout``, ``HalfCheetah``, ``CartPole``), a full gymnasium id, or
    ``module:EnvId`` (gymnasium's convention: importing ``module`` registers ``EnvId``; Box2D and other third-party
    ids registered by gymnasium itself need no module).

    Raises:
        UserError: for a module that cannot be imported, or an unknown name (listing the closest known names).
    """
    module = None
    if ":" in name:
        module, _, name = name.partition(":")
        import_env_module(module, f"{module}:{name}")
    registry = _registry()
    if name in registry:
        env_id = name
    else:
        short = _short_names()
        lowered = {key.lower(): value for key, value in short.items()}
        ids = short.get(name) or lowered.get(name.lower().replace("-", "").replace("_", ""))
        if ids is not None and len(ids) > 1:
            raise UserError(f"{name!r} names both the Atari game {ids[0]} and {', '.join(ids[1:])}: give the full "
                            "id to --env")
        env_id = ids[0] if ids else None
        if env_id is None:
            own = registered_by(module) if module else []
            candidates = own or sorted(short) + sorted(registry)
            close = difflib.get_close_matches(name, candidates, n=4, cutoff=0.5)
            if module and not close:
                hint = (f"it registers {', '.join(own)}" if own else
                        "check the gymnasium.register(id=...) call it makes on import")
            else:
                hint = f"did you mean {', '.join(close)}?" if close else "use a gymnasium id such as CartPole-v1"
            where = f" after importing {module!r}" if module else ""
            raise UserError(f"unknown environment {name!r}{where}: {hint}")
    family = _family(env_id)
    game = gym.spec(env_id).kwargs.get("game") if family == "atari" else None
    return ResolvedEnv(env_id=env_id, family=family, game=game)
