"""Config dataclasses -> command-line flags, with each field's docstring as its help."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import math
import textwrap
import tomllib
import typing
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rlkit.errors import UserError, close_names


@lru_cache(maxsize=None)
def field_docs(cls: type) -> dict[str, str]:
    """The string literal written under each field of a dataclass (its "docstring")."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        body = tree.body[0].body
        for node, after in zip(body, body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and not ast.unparse(node.annotation).startswith(("ClassVar", "typing.ClassVar"))  # not a field
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def whole_number(text: str) -> int:
    """An argparse type for counts: ``1000000``, ``1_000_000`` or ``1e6`` (how step budgets are written in SB3 and
    rl-zoo), but not ``2.5``."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (write e.g. 100000 or 1e5)") from None
    if not math.isfinite(value) or not value.is_integer():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (write e.g. 100000 or 1e5)")
    return int(value)


whole_number.__name__ = "int"  # argparse names the type in its messages and rlkit's metavars read INT


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def add_config_flags(parser: argparse.ArgumentParser, cls: type, title: str, defaults: Any | None = None) -> None:
    """Add one flag per field of dataclass ``cls``. Flags default to None: unset flags keep the preset's value.

    The help shows each field's value in ``defaults`` (the preset that will run) when given, else the class's."""
    group = parser.add_argument_group(title)
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    for field in dataclasses.fields(cls):
        if not field.init:
            continue
        hint = hints[field.name]
        if defaults is not None:
            default = getattr(defaults, field.name)
        else:
            default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        help_text = f"{docs.get(field.name, '')} (default: {default})".replace("%", "%%")  # argparse formats help
        kwargs: dict[str, Any] = {"default": None, "help": help_text, "dest": field.name}
        if hint is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(hint) is tuple:
            item = typing.get_args(hint)[0]
            kwargs.update(nargs="+", type=whole_number if item is int else item, metavar="N")
        else:
            kwargs["type"] = whole_number if hint is int else hint
            kwargs["metavar"] = hint.__name__.upper()
        group.add_argument(flag_name(field.name), **kwargs)


def apply_flags(config: Any, args: argparse.Namespace) -> Any:
    """A copy of ``config`` with every flag the user set."""
    changes = {}
    for field in dataclasses.fields(config):
        value = getattr(args, field.name, None)
        if value is not None:
            changes[field.name] = tuple(value) if isinstance(value, list) else value
    return dataclasses.replace(config, **changes)


def config_flags_given(config_class: type, args: argparse.Namespace) -> list[str]:
    """The config flags the user set on the command line."""
    return [flag_name(f.name) for f in dataclasses.fields(config_class) if getattr(args, f.name, None) is not None]


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain data (tuples become lists) for checkpoints and JSON."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def config_from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a config saved by :func:`config_to_dict`; unknown keys are an error."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {sorted(unknown)}")
    values = {k: tuple(v) if typing.get_origin(hints[k]) is tuple else v for k, v in data.items()}
    return cls(**values)


# ---------------------------------------------------------------------------------------------------- files
CONFIG_SUFFIXES = (".yml", ".yaml", ".toml")
META_KEYS = ("source",)
"""Keys a hyperparameter file may hold beside values: ``source`` says where the numbers come from."""


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping a YAML (``.yml``/``.yaml``) or TOML (``.toml``) file holds; anything else is a one-line
    :class:`UserError` naming the file."""
    path = Path(path)
    if path.suffix not in CONFIG_SUFFIXES:
        raise UserError(f"{path}: a config file is YAML (.yml, .yaml) or TOML (.toml): rename it or convert it")
    try:
        text = path.read_text()
    except OSError as error:
        raise UserError(f"cannot read config file {path}: {error.strerror or error}") from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as error:
        first = " ".join(str(error).split())[:200]
        raise UserError(f"{path} is not valid {'TOML' if path.suffix == '.toml' else 'YAML'}: {first}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a mapping of field: value (or of env id: {{field: value}}), "
                        f"not a {type(data).__name__}")
    return data


@dataclass(frozen=True)
class Above:
    """A ``READ_ONLY_WITH`` rule's readers that are a range: the switch reads the field when above ``bound``
    (``"target_noise_clip": ("target_policy_noise", Above(0.0, example=0.2))``)."""

    bound: float
    example: float
    """A value that reads it, named in the error's fix."""

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool) and value > self.bound


Readers = tuple[Any, ...] | Above
"""The values of a switch that read a field: listed, or a range."""


def read_only_with(config_class: type) -> dict[str, tuple[str, Readers]]:
    """The ``READ_ONLY_WITH`` tables of ``config_class`` and of the classes it is made of (a mixin such as
    PPO's recurrence fields), merged."""
    return {name: rule for cls in reversed(config_class.__mro__)
            for name, rule in vars(cls).get("READ_ONLY_WITH", {}).items()}


def refuse_unread_flags(args: Any, table: Mapping[str, tuple[str, Readers]],
                        chosen: Callable[[str], Any]) -> None:
    """Refuse, in one line, a flag given in ``args`` for a field that this run does not read. ``table`` (a config
    class's ``READ_ONLY_WITH``) maps such a field to the field that switches it on and the values that read it
    (``"priority_alpha": ("prioritized", (True,))``); ``chosen(field)`` is the run's value of a switch."""
    for name, (switch, readers) in table.items():
        if getattr(args, name, None) is None:
            continue
        value = chosen(switch)
        if value in readers:
            continue
        flag, by = "--" + name.replace("_", "-"), "--" + switch.replace("_", "-")
        if isinstance(readers, Above):
            raise UserError(f"{flag} is read only when {by} is above {readers.bound:g}; this run's {by} is {value}: "
                            f"drop {flag} (or add {by} {readers.example:g})")
        if readers == (True,):
            raise UserError(f"{flag} is read only with {by}, which this run does not use: drop {flag} (or add {by})")
        shown = " and ".join(str(r) for r in readers)
        raise UserError(f"{flag} is read by {by} {shown}; this run's {by} is {value}: drop {flag} (or add {by} "
                        f"{readers[0]})")


def unknown_key(key: str, known: Iterable[str], where: str) -> UserError:
    """The one-line error for a key that names no field, with the closest field names."""
    close = close_names(str(key), known)
    hint = f"did you mean {', '.join(close)}?" if close else "see --help for the fields"
    return UserError(f"{where}: unknown key {key!r}: {hint}")


TYPE_WORDS = {int: "a whole number", float: "a number", bool: "true or false", str: "a string"}


def coerce(hint: Any, value: Any, key: str, where: str) -> Any:
    """``value`` read from a file as the field's type: YAML reads ``1e-3`` as a string and ``!!float 1e5`` as a
    float, so numbers written either way are accepted where the field wants them; a tuple field takes a list."""
    def wrong() -> UserError:
        return UserError(f"{where}: {key} must be {TYPE_WORDS.get(hint, getattr(hint, '__name__', hint))}, got "
                         f"{value!r}")

    if typing.get_origin(hint) is tuple:
        items = value if isinstance(value, list) else [value]
        return tuple(coerce(typing.get_args(hint)[0], item, key, where) for item in items)
    if hint is bool:
        if not isinstance(value, bool):
            raise wrong()
        return value
    if hint in (int, float):
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise wrong() from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong()
        if hint is int:
            if not float(value).is_integer():
                raise wrong()
            return int(value)
        return float(value)
    if hint is str and not isinstance(value, str):
        raise wrong()
    return value


def apply_values(config: Any, values: Mapping[str, Any], where: str) -> Any:
    """A copy of ``config`` with ``values`` (field -> value, read from ``where``), each coerced to its field's type;
    a value the config refuses is a one-line error naming ``where``."""
    hints = typing.get_type_hints(type(config))
    known = [f.name for f in dataclasses.fields(config) if f.init]
    for key in values:
        if key not in known:
            raise unknown_key(key, known, where)
    changes = {key: coerce(hints[key], value, key, where) for key, value in values.items()}
    try:
        return dataclasses.replace(config, **changes)  # __post_init__ validates
    except UserError as error:
        raise UserError(f"{where}: {error}") from None


# ---------------------------------------------------------------------------------------------------- validation
@dataclass(frozen=True)
class Bound:
    """The values a number may take: finite, and within ``low``..``high`` (each end open or closed)."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def holds(self, value: float) -> bool:
        if not math.isfinite(value):  # nan fails every comparison below too, inf would pass ">= 0"
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        low, high = f"{self.low:g}", f"{self.high:g}"
        if math.isinf(self.low) and math.isinf(self.high):
            return "a finite number"
        if math.isinf(self.high):
            return f"> {low}" if self.low_open else f"at least {low}"
        if math.isinf(self.low):
            return f"{'<' if self.high_open else '<='} {high}"
        return f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"


@dataclass(frozen=True)
class OneOf:
    """The names a string field may take."""

    names: tuple[str, ...]

    def holds(self, value: str) -> bool:
        return value in self.names

    def __str__(self) -> str:
        return "one of " + ", ".join(self.names)


FINITE = Bound()
POSITIVE = Bound(0, low_open=True)
"""> 0: rates, scales and step sizes."""
COUNT = Bound(1)
""">= 1: sizes and counts (a count of 0 is refused, never read as "the default")."""
NON_NEGATIVE = Bound(0)
""">= 0: weights, clip norms and intervals where 0 means "off"."""
UNIT = Bound(0, 1)
"""[0, 1]: probabilities, fractions, GAE lambda."""
DISCOUNT = Bound(0, 1, low_open=True)
"""(0, 1]: discount factors and Polyak rates (0 would never learn or never move)."""

Constraint = Bound | OneOf


def constraints(cls: type) -> dict[str, Constraint]:
    """Field -> constraint, from the ``CHECKS`` table of ``cls`` and of every class it inherits from (a subclass's
    entry wins)."""
    table: dict[str, Constraint] = {}
    for klass in reversed(cls.__mro__):
        table.update(vars(klass).get("CHECKS", {}))
    return table


def require(flag: str, value: Any, constraint: Constraint) -> None:
    """Raise a one-line :class:`UserError` naming ``flag`` unless ``value`` (or each entry of a tuple) holds."""
    values = value if isinstance(value, (tuple, list)) else (value,)
    if isinstance(constraint, Bound):
        # bool is an int to Python, but a number given for a bool field is not what was meant
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise UserError(f"{flag} must be a number, got {value!r}")
    if not all(constraint.holds(v) for v in values):
        if isinstance(constraint, Bound) and not all(math.isfinite(v) for v in values) and constraint != FINITE:
            constraint_text = f"a finite number {constraint}"
        else:
            constraint_text = str(constraint)
        shown = " ".join(map(str, value)) if isinstance(value, (tuple, list)) else value
        what = "entries" if isinstance(value, (tuple, list)) else ""
        raise UserError(f"{flag} {what + ' ' if what else ''}must be {constraint_text}, got {shown}")


def check(config: Any) -> None:
    """Check every field of ``config`` that its class (or a base) declares in ``CHECKS``; agent configs call this
    from ``__post_init__``, so a new config is validated by declaring its table. Numbers are always finite."""
    table = constraints(type(config))
    for field in dataclasses.fields(config):
        if field.name in table:
            require(flag_name(field.name), getattr(config, field.name), table[field.name])


def unchecked_numbers(cls: type) -> list[str]:
    """Number fields (int, float, tuple of them) of dataclass ``cls`` with no declared constraint."""
    hints = typing.get_type_hints(cls)
    table = constraints(cls)
    numeric = (int, float)
    return [f.name for f in dataclasses.fields(cls) if f.name not in table and (
        hints[f.name] in numeric or (typing.get_origin(hints[f.name]) is tuple
                                     and typing.get_args(hints[f.name])[0] in numeric))]


def require_all(checks: Iterable[tuple[str, Any, Constraint]]) -> None:
    """:func:`require` each ``(flag, value, constraint)`` in turn (settings that are not a config's fields)."""
    for flag, value, constraint in checks:
        require(flag, value, constraint)
