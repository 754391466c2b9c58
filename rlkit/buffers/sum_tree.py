"""A sum tree over a fixed number of leaves, vectorized over batches (for prioritized replay)."""

from __future__ import annotations

import numpy as np


class SumTree:
    """Binary tree whose internal nodes hold the sum of their leaves; sampling by prefix sum is O(log n).

    Stored as one flat array: node 1 is the root, node ``i`` has children ``2i`` and ``2i+1``, and leaf ``j`` is
    node ``size + j`` where ``size`` is the leaf count rounded up to a power of two.
    """

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.size = 1 << max(0, int(capacity - 1).bit_length())
        self.nodes = np.zeros(2 * self.size, dtype=np.float64)

    @property
    def total(self) -> float:
        return float(self.nodes[1])

    def __getitem__(self, leaves: np.ndarray) -> np.ndarray:
        return self.nodes[self.size + np.asarray(leaves)]

    def set(self, leaves: np.ndarray | int, values: np.ndarray | float) -> None:
        """Set leaf values and refresh their ancestors (duplicate leaves: the last value wins)."""
        nodes = np.atleast_1d(np.asarray(leaves, dtype=np.int64)) + self.size
        if nodes.size == 0:  # e.g. a priority update whose transitions were all overwritten since sampling
            return
        self.nodes[nodes] = values
        nodes = np.unique(nodes >> 1)
        while nodes[0] >= 1:
            self.nodes[nodes] = self.nodes[2 * nodes] + self.nodes[2 * nodes + 1]
            nodes = np.unique(nodes >> 1)
            if nodes[0] == 0:
                break

    def find(self, prefix_sums: np.ndarray) -> np.ndarray:
        """Leaf index ``j`` for each value ``v`` such that ``sum(leaves[:j]) <= v < sum(leaves[:j+1])``."""
        values = np.asarray(prefix_sums, dtype=np.float64).copy()
        nodes = np.ones(len(values), dtype=np.int64)
        while nodes[0] < self.size:  # every path has the same depth
            left = 2 * nodes
            left_sum = self.nodes[left]
            go_right = values >= left_sum
            # Float round-off can point past a zero-weight subtree; never descend into an empty one.
            go_right &= self.nodes[left + 1] > 0
            go_right |= left_sum <= 0
            values -= np.where(go_right, left_sum, 0.0)
            nodes = left + go_right
        return nodes - self.size
