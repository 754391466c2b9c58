"""Errors meant for the person at the keyboard, not for a traceback."""


class UserError(Exception):
    """A problem with the user's input (a name, a file, a flag).

    Command lines print its message on one line and exit with status 2. The message names the problem
    and the fix.
    """
