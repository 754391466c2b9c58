"""Preallocated storage: replay (frames stored once, priorities, n-step, bootstrap masks)."""

from rlkit.buffers.replay import Batch, ReplayBuffer
from rlkit.buffers.sum_tree import SumTree

__all__ = ["Batch", "ReplayBuffer", "SumTree"]
