"""Train an agent or a supervised net: ``python train.py --agent dqn --env Breakout``; see ``--help``
(the command line is :mod:`rlkit.cli.train`)."""

from rlkit.cli.train import main
from rlkit.distributed import exit_without_teardown, launched_by_torchrun
from rlkit.errors import run_command

if __name__ == "__main__":
    run_command(main)
    if launched_by_torchrun():
        exit_without_teardown()  # saved and shut down: gloo's exit-time destructors could still fail the run
