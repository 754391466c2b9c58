"""``python -m rlkit COMMAND ...``: the ``rlkit`` command (see :mod:`rlkit.cli.main`)."""

from rlkit.cli.main import main

if __name__ == "__main__":
    main()
