"""rlkit: deep reinforcement learning (and the supervised work around it) in PyTorch."""

__version__ = "0.1.0"
