"""Networks shared by agents and supervised tasks: encoders (observations -> features) and heads."""

from rlkit.nets.encoders import MLP, NatureCNN, make_encoder
from rlkit.nets.heads import BootstrappedQHeads, DuelingQHead, ParallelLinear, QHead

__all__ = ["MLP", "NatureCNN", "make_encoder", "QHead", "DuelingQHead", "BootstrappedQHeads", "ParallelLinear"]
