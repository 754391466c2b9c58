"""Networks shared by agents and supervised tasks: encoders (observations -> features) and heads."""

from rlkit.nets.encoders import MLP, NatureCNN, make_encoder
from rlkit.nets.policies import (
    ActorCritic, CategoricalHead, DiagGaussian, GaussianHead, RunningMeanStd, ValueHead, kl_divergence,
)
from rlkit.nets.heads import BootstrappedQHeads, DuelingQHead, ParallelLinear, QHead

__all__ = [
    "ActorCritic", "CategoricalHead", "DiagGaussian", "GaussianHead", "RunningMeanStd", "ValueHead", "kl_divergence",
    "MLP", "NatureCNN", "make_encoder", "QHead", "DuelingQHead", "BootstrappedQHeads", "ParallelLinear"]
