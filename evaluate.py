"""Evaluate a saved run: ``python evaluate.py RUN_DIR``; see ``--help`` (the command line is
:mod:`rlkit.cli.evaluate`)."""

from rlkit.cli.evaluate import main
from rlkit.errors import run_command

if __name__ == "__main__":
    run_command(main)
