"""The command lines, thin over :mod:`rlkit.jobs`: ``train.py`` is :mod:`rlkit.cli.train`, ``evaluate.py``
:mod:`rlkit.cli.evaluate`."""

import sys

SCRIPTS = {"train": "python train.py", "eval": "python evaluate.py"}
"""How a checkout runs each command without the ``rlkit`` entry point."""


def command(name: str) -> str:
    """How the user spells command ``name`` in this process: ``rlkit eval`` under the ``rlkit`` command (which sets
    ``sys.argv[0]`` to ``rlkit train`` while a subcommand runs), ``python evaluate.py`` from a checkout, so hints
    name a command the user has."""
    return f"rlkit {name}" if sys.argv[0].startswith("rlkit") else SCRIPTS[name]
