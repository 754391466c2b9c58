"""Errors meant for the person at the keyboard, not for a traceback."""

from __future__ import annotations

from collections.abc import Callable


class UserError(Exception):
    """A problem with the user's input (a name, a file, a flag).

    Command lines print its message on one line and exit with status 2. The message names the problem
    and the fix.
    """


def run_command(main: Callable[[], object]) -> None:
    """Run a command line's ``main``: a :class:`UserError` becomes one line on stderr and exit status 2."""
    import sys

    try:
        main()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
