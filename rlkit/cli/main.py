"""The ``rlkit`` command: ``rlkit train ...``, ``rlkit eval RUN_DIR``, ``rlkit plot``, ``rlkit runs``, ``rlkit tune``,
``rlkit visualize`` (also ``python -m rlkit ...``). Each subcommand is one module's ``main(argv)``; ``train.py`` and
``evaluate.py`` in a checkout are the same commands."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

from rlkit.errors import run_command

COMMANDS = {
    "train": ("rlkit.cli.train", "train an agent (--agent dqn --env CartPole) or a supervised net (--task --net)"),
    "eval": ("rlkit.cli.evaluate", "evaluate a saved run: rlkit eval RUN_DIR (--best for its best checkpoint)"),
    "plot": ("rlkit.cli.plot", "learning curves of runs as a PNG, mean and spread over seeds"),
    "runs": ("rlkit.cli.runs", "a table of runs: steps done, best and last evaluation, finished/stopped/running"),
    "tune": ("rlkit.cli.tune", "search hyperparameters with Optuna (pip install 'rlkit[tune]')"),
    "visualize": ("rlkit.cli.visualize", "adversarial and feature visualizations of a discriminator classifier run"),
}
"""name -> (module with ``main(argv)``, one line for ``rlkit --help``). Modules are imported only when run: torch and
the jobs take seconds to import, and ``rlkit --help`` should not wait for them."""


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: rlkit COMMAND [ARGS...]   (rlkit COMMAND --help for its flags)", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {line}" for name, (_, line) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Run ``rlkit COMMAND ARGS``: a :class:`~rlkit.errors.UserError` is one line on stderr and exit status 2; a
    command's own exit status (130 for a training stopped by Ctrl-C) passes through."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}: use one of {', '.join(COMMANDS)} (rlkit --help)", file=sys.stderr)
        sys.exit(2)
    module_name = COMMANDS[name][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise
        print(f"error: rlkit {name} is not in this version of rlkit ({module_name} is missing)", file=sys.stderr)
        sys.exit(2)
    # argparse names the program after argv[0]: `rlkit train --help` then reads "usage: rlkit train ...".
    program = sys.argv[0]
    sys.argv[0] = f"rlkit {name}"
    try:
        if name == "train":
            from rlkit.distributed import run_and_leave

            run_and_leave(lambda: run_command(lambda: module.main(rest)))  # as train.py does under torchrun
        else:
            run_command(lambda: module.main(rest))
    except BrokenPipeError:  # `rlkit runs | head` closed the pipe: not an error of ours, and no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's own flush at exit would fail too
        sys.exit(1)
    finally:
        sys.argv[0] = program
