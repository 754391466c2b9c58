"""Hyperparameter files: the per-env values shipped here (``<agent>.yml``, rl-baselines3-zoo's tuned values mapped
onto our config fields) and the files a user passes with ``--config``.

A file holds config fields and run settings (``total_steps``, ``num_envs``), flat or in sections keyed by env::

    learning_rate: 1.0e-3        # flat: applies to every env
    CartPole-v1:                 # a section: applies when the run's env resolves to this id
      batch_size: 64
      total_steps: 50000
      source: where the numbers come from (ignored)

A section's key is a gymnasium id or a short name (``CartPole``); the run's env matches it when both resolve to
the same id. Its values override the file's flat ones. TOML files take the same shape (``[CartPole-v1]`` tables).

The layers of a run, each overriding the one before: the agent's family preset < the shipped file's section for
the env < each ``--config`` file in the order given < flags. :func:`resolve` records where each value came from.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlkit.agents import RUN_KEYS, WARMUP_FIELDS, WARMUP_FRACTION  # RUN_KEYS: run settings a file may set
from rlkit.config import META_KEYS, apply_values, coerce, read_config_file, unknown_key
from rlkit.envs import resolve_env
from rlkit.errors import UserError

HYPERPARAMS_DIR = Path(__file__).parent
"""The shipped files (package data)."""


@dataclass
class Layer:
    """Values from one place, and the label ``--print-config`` shows for them."""

    label: str
    values: dict[str, Any]


@dataclass
class Resolved:
    """A config and run settings after every layer, with the label of the layer each value came from."""

    config: Any
    run: dict[str, int]
    sources: dict[str, str] = field(default_factory=dict)
    """Field or run setting -> the label of the layer that set it last."""
    labels: list[str] = field(default_factory=list)
    """Every layer's label, in the order they applied."""

    def by_source(self) -> dict[str, list[str]]:
        """Layer label -> the names it set (and no later layer overrode), in the order the layers applied."""
        grouped = {label: [name for name, source in self.sources.items() if source == label] for label in self.labels}
        return {label: names for label, names in grouped.items() if names}


def shipped_file(agent: str) -> Path | None:
    """The shipped file of an agent name (``ppo`` -> ``hyperparams/ppo.yml``), or None."""
    path = HYPERPARAMS_DIR / f"{agent}.yml"
    return path if path.is_file() else None


def shipped_agents() -> list[str]:
    """The agent names with a shipped file."""
    return sorted(path.stem for path in HYPERPARAMS_DIR.glob("*.yml"))


def file_layers(path: Path, label: str, env_id: str, known: Iterable[str]) -> list[Layer]:
    """The layers file ``path`` gives a run on ``env_id``: its flat values, then its section for the env (each
    left out when empty). Every key of every section must be a field in ``known`` or a run setting."""
    data = read_config_file(path)
    known = [*known, *RUN_KEYS]
    flat: dict[str, Any] = {}
    section: tuple[str, dict[str, Any]] | None = None
    for key, value in data.items():
        if isinstance(value, dict):
            values = _checked(value, known, f"{path} [{key}]")
            if _env_id_of(key, path) == env_id:
                if section is not None:
                    raise UserError(f"{path}: sections {section[0]!r} and {key!r} both name {env_id}: keep one")
                section = (key, values)
        elif key not in META_KEYS:
            if key not in known:
                raise unknown_key(key, known, str(path))
            flat[key] = value
    layers = [Layer(label, flat)] if flat else []
    if section is not None and section[1]:
        layers.append(Layer(f"{label}:{section[0]}", section[1]))
    return layers


def _checked(values: Mapping[str, Any], known: Sequence[str], where: str) -> dict[str, Any]:
    for key in values:
        if key not in known and key not in META_KEYS:
            raise unknown_key(key, known, where)
    return {key: value for key, value in values.items() if key not in META_KEYS}


def _env_id_of(key: str, path: Path) -> str:
    try:
        return resolve_env(str(key)).env_id
    except UserError as error:
        raise UserError(f"{path}: section {key!r} names no env ({error}); a section's key is an env id such as "
                        "CartPole-v1") from None


def layers_for(file_stem: str, env_id: str, config_files: Sequence[str | Path], known: Iterable[str],
               variant: Layer | None = None, preset: Sequence[Layer] = ()) -> list[Layer]:
    """The shipped file's section for ``env_id`` (``hyperparams/<file_stem>.yml``), the agent name's ``variant``
    again (a file tuned for plain DQN must not undo what ``bootstrapped-dqn`` means), a ``--preset``'s layers, then
    the layers of each file of ``config_files``."""
    known = list(known)
    layers = []
    shipped = shipped_file(file_stem)
    if shipped is not None:
        layers += file_layers(shipped, f"hyperparams/{shipped.name}", env_id, known)
    if layers and variant is not None and variant.values:
        layers.append(variant)
    layers += preset
    for path in config_files:
        layers += file_layers(Path(path), f"--config {path}", env_id, known)
    return layers


PRESETS_DIR = HYPERPARAMS_DIR / "presets"
"""Protocol presets (``--preset NAME``): ``presets/NAME.yml``."""
PRESET_META = ("source", "family")
PRESET_RUN_KEYS = ("eval_episodes", "eval_interval")
"""Settings of the run a protocol preset may fix besides :data:`~rlkit.agents.RUN_KEYS`: how it is evaluated."""


def preset_names() -> list[str]:
    return sorted(path.stem for path in PRESETS_DIR.glob("*.yml"))


@dataclass
class Protocol:
    """A protocol preset as it applies to one agent: its layers and the evaluation settings it fixes."""

    layers: list[Layer]
    run: dict[str, int]


def protocol(name: str, agent: str, family: str, known: Iterable[str]) -> Protocol:
    """``presets/<name>.yml`` for ``agent``: its flat values (the protocol's, for every agent it lists), then the
    agent's section (a published agent's values). An agent without a section, or an env outside the preset's
    family, is refused."""
    path = PRESETS_DIR / f"{name}.yml"
    if not path.is_file():
        raise UserError(f"--preset {name}: no such preset; choose one of {', '.join(preset_names()) or 'none'}")
    data = read_config_file(path)
    agents = {key: value for key, value in data.items() if isinstance(value, dict)}
    if agent not in agents:
        raise UserError(f"--preset {name} has values for --agent {', '.join(agents)}, not {agent}")
    if data.get("family") and data["family"] != family:
        raise UserError(f"--preset {name} is for {data['family']} envs; this env is {family}")
    known = [*known, *RUN_KEYS]
    flat = {key: value for key, value in data.items() if key not in agents and key not in PRESET_META}
    run = {key: coerce(int, flat.pop(key), key, str(path)) for key in PRESET_RUN_KEYS if key in flat}
    label = f"--preset {name}"
    layers = [Layer(label, _checked(flat, known, str(path))),
              Layer(f"{label}:{agent}", _checked(agents[agent], known, f"{path} [{agent}]"))]
    return Protocol([layer for layer in layers if layer.values], run)


def resolve(config: Any, run: Mapping[str, int], base_label: str, layers: Sequence[Layer]) -> Resolved:
    """``config`` and ``run`` (labelled ``base_label``) with ``layers`` applied in order."""
    run = dict(run)
    names = [f.name for f in dataclasses.fields(config) if f.init]
    sources = {name: base_label for name in [*names, *run]}
    for layer in layers:
        fields = {k: v for k, v in layer.values.items() if k not in RUN_KEYS}
        config = apply_values(config, fields, layer.label)
        for key in RUN_KEYS:
            if key in layer.values:
                run[key] = coerce(int, layer.values[key], key, layer.label)
                if run[key] < 1:
                    raise UserError(f"{layer.label}: {key} must be at least 1, got {run[key]}")
        sources.update({key: layer.label for key in layer.values})
    return Resolved(config, run, sources, [base_label, *(layer.label for layer in layers)])


def budgeted_warmup(published: int, published_budget: int, total_steps: int) -> int:
    """A warm-up of ``published`` steps, tuned for a run of ``published_budget`` steps, for a run of
    ``total_steps``: the published value at or above its budget; below it, at most the larger of
    :data:`~rlkit.agents.WARMUP_FRACTION` of the run and the published share of it, never more than published,
    and below the run's length, so that it updates at least once."""
    if total_steps >= published_budget:
        return published
    share = max(WARMUP_FRACTION, published / published_budget)
    return min(published, math.ceil(share * total_steps), total_steps - 1)


def budgeted(resolved: Resolved, layers: Sequence[Layer], total_steps: int, defaults: Sequence[str]) -> Resolved:
    """``resolved`` with each warm-up field that one of the ``defaults`` layers set (the family preset, a shipped
    file: not the user's ``--config``) fitted to a run of ``total_steps`` by :func:`budgeted_warmup`, against the
    budget of the layer that set it."""
    budgets = {resolved.labels[0]: resolved.run["total_steps"]}
    budgets.update({layer.label: layer.values["total_steps"] for layer in layers if "total_steps" in layer.values})
    config, sources, labels = resolved.config, dict(resolved.sources), list(resolved.labels)
    for name in WARMUP_FIELDS:
        source = sources.get(name)
        if not hasattr(config, name) or source not in defaults:
            continue
        published, budget = getattr(config, name), int(budgets.get(source, budgets[resolved.labels[0]]))
        value = budgeted_warmup(published, budget, total_steps)
        if value != published:
            label = (f"budget: {name} {published} of {source} is for {budget} steps; {value} for {total_steps} "
                     f"(at most {max(WARMUP_FRACTION, published / budget):.0%} of the run)")
            config = dataclasses.replace(config, **{name: value})
            sources[name] = label
            labels.append(label)
    return dataclasses.replace(resolved, config=config, sources=sources, labels=labels)
