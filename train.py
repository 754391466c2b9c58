"""Train an agent or a supervised net: ``python train.py --agent dqn --env Breakout``; see ``--help``
(the command line is :mod:`rlkit.cli.train`)."""

from rlkit.cli.train import main
from rlkit.distributed import run_and_leave
from rlkit.errors import run_command

if __name__ == "__main__":
    run_and_leave(lambda: run_command(main))  # under torchrun, without the teardown that can abort a saved run
