"""The command lines, thin over :mod:`rlkit.jobs`: ``train.py`` is :mod:`rlkit.cli.train`, ``evaluate.py``
:mod:`rlkit.cli.evaluate`."""

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence

SCRIPTS = {"train": "python train.py", "eval": "python evaluate.py"}
"""How a checkout runs each command without the ``rlkit`` entry point."""


def command(name: str) -> str:
    """How the user spells command ``name`` in this process: ``rlkit eval`` under the ``rlkit`` command (which sets
    ``sys.argv[0]`` to ``rlkit train`` while a subcommand runs), ``python evaluate.py`` from a checkout, so hints
    name a command the user has."""
    return f"rlkit {name}" if sys.argv[0].startswith("rlkit") else SCRIPTS[name]


def flag_owners(unknown: Sequence[str], parsers: Callable[[], Mapping[str, argparse.ArgumentParser]]
                ) -> tuple[str, list[str]] | None:
    """The first ``--flag`` among a parser's ``unknown`` arguments that other parsers take, with their names (other
    agents, other kinds of run); None if none does. ``parsers`` is called once, only when there is a flag to look
    up."""
    flags = [arg.split("=", 1)[0] for arg in unknown if arg.startswith("--")]
    if not flags:
        return None
    built = parsers()
    for flag in flags:
        owners = [name for name, parser in built.items() if flag in parser._option_string_actions]
        if owners:
            return flag, owners
    return None
