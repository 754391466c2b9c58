"""Preallocated storage: replay (frames stored once, priorities, n-step, bootstrap masks) and rollouts."""

from rlkit.buffers.replay import Batch, ReplayBuffer, ReplaySpec
from rlkit.buffers.rollout import RolloutBatch, RolloutBuffer, RolloutSpec
from rlkit.buffers.sum_tree import SumTree

__all__ = ["Batch", "ReplayBuffer", "ReplaySpec", "RolloutBatch", "RolloutBuffer", "RolloutSpec", "SumTree"]
