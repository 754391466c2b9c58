"""Errors meant for the person at the keyboard, not for a traceback."""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Callable, Iterable


class UserError(Exception):
    """A problem with the user's input (a name, a file, a flag).

    Command lines print its message on one line and exit with status 2. The message names the problem
    and the fix.
    """

    reported = False
    """Already printed where it arose (the loop says why a run stopped before torchrun can stop the process):
    :func:`run_command` then only exits."""


def run_command(main: Callable[[], object]) -> None:
    """Run a command line's ``main``: a :class:`UserError` becomes one line on stderr and exit status 2."""
    try:
        main()
    except UserError as error:
        if not error.reported:
            print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


def close_names(name: str, choices: Iterable[str], n: int = 3, cutoff: float = 0.6) -> list[str]:
    """The ``choices`` a mistyped ``name`` may have meant, best first: difflib's close matches, then the choices
    that hold ``name`` as one of their words (``mlp`` -> ``numpy-mlp``, ``dueling`` -> ``dueling-dqn``), which
    difflib's ratio misses when the rest of the name is long."""
    choices = list(choices)
    close = difflib.get_close_matches(name, choices, n=n, cutoff=cutoff)
    word = name.lower()
    holding = [choice for choice in choices
               if choice not in close and word in re.split(r"[-_./:]", choice.lower())]
    return (close + holding)[:n]


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors (an unknown or malformed flag) are one line naming the fix, exit status 2,
    instead of the usage text followed by the error."""

    def __init__(self, *args: object, hint: str = "add --help to list them", **kwargs: object):
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.hint = hint

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message}: {self.hint}\n")


class BadEnvOutput(UserError):
    """An env returned a reward or an observation no agent can learn from (NaN, infinity). Raised by the env's
    step, before any of it reaches a learner: the loop stops with this message, its last checkpoint intact."""


class SourceLost(UserError):
    """A source can give no more batches (a parameter server's worker died). Raised by ``source.next()`` before it
    takes anything, so the loop saves the step it is at, then stops with this message."""
