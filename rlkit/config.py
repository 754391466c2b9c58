"""Config dataclasses -> command-line flags, with each field's docstring as its help."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import textwrap
import typing
from functools import lru_cache
from typing import Any


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
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


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
            kwargs.update(nargs="+", type=typing.get_args(hint)[0], metavar="N")
        else:
            kwargs["type"] = hint
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
