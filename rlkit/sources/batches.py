"""Supervised batch sources: what they all share (which rows make each batch, and the seed of its augmentation),
and the sources of in-memory image data sets and of video data sets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from rlkit.data import ArrayDataset, VideoDataset, collate_videos
from rlkit.errors import UserError


class ShuffledBatches:
    """The order of a source's batches; ``steps`` counts updates.

    The order is a pure function of (seed, epoch) and each batch's augmentation of (seed, step, rank), so a resumed
    run sees exactly the batches the uninterrupted one would have. With ``world_size`` > 1 each rank takes its own
    share of every epoch's permutation. Subclasses read the rows :meth:`next_rows` gives.
    """

    def __init__(self, size: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 what: str = "images"):
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.steps_per_epoch = size // world_size // batch_size
        if self.steps_per_epoch < 1:
            raise UserError(f"the training set has {size} {what}, fewer than one batch of {batch_size} per "
                            "process: lower --batch-size")
        self.size, self.steps = size, 0
        self._epoch, self._order = -1, np.empty(0, dtype=np.int64)
        self._generator = torch.Generator()

    def next_rows(self) -> tuple[np.ndarray, torch.Generator]:
        """The rows of the next batch and a generator seeded for its augmentation; advances ``steps``."""
        epoch, index = divmod(self.steps, self.steps_per_epoch)
        if epoch != self._epoch:
            perm = np.random.default_rng([self.seed, epoch]).permutation(self.size)
            self._order, self._epoch = perm[self.rank::self.world_size], epoch
        rows = self._order[index * self.batch_size:(index + 1) * self.batch_size]
        self._generator.manual_seed((self.seed * 1_000_003 + self.steps) * self.world_size + self.rank)
        self.steps += 1
        return rows, self._generator

    recent_returns: tuple[float, ...] = ()
    """No games here (the loop asks every source)."""

    def pop_finished(self) -> list[tuple[int, float, int]]:
        """No episodes here (the loop asks every source)."""
        return []

    def reset(self, seed: int | None = None) -> None:
        """Nothing to restart: the position in the stream is all the state."""

    def close(self) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        """The position in the stream: every batch to come follows from it."""
        return {"steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = state["steps"]


class ImageBatchSource(ShuffledBatches):
    """Shuffled mini-batches of an in-memory data set for the loop (order and seeds: :class:`ShuffledBatches`)."""

    def __init__(self, data: ArrayDataset, batch_size: int, seed: int, transform: Callable[..., torch.Tensor],
                 device: torch.device, as_numpy: bool = False, rank: int = 0, world_size: int = 1):
        super().__init__(len(data.labels), batch_size, seed, rank, world_size, "images")
        self.images = torch.from_numpy(np.ascontiguousarray(data.images))
        self.labels = torch.from_numpy(data.labels.astype(np.int64))
        self.transform, self.device, self.as_numpy = transform, device, as_numpy

    def next(self) -> tuple[Any, Any]:
        rows, generator = self.next_rows()
        rows = torch.from_numpy(rows)
        images = self.transform(self.images[rows].to(self.device), generator=generator)
        labels = self.labels[rows].to(self.device)
        if self.as_numpy:
            return images.cpu().numpy(), labels.cpu().numpy()
        return images, labels


class VideoBatchSource(ShuffledBatches):
    """Shuffled mini-batches of a :class:`rlkit.data.VideoDataset` for the shared loop, read in the calling process.

    The order and seeds are :class:`ShuffledBatches`' (as for image data sets); each batch's frame positions come
    from the batch's seeded generator too, so a resumed run sees the same batches.
    """

    def __init__(self, data: VideoDataset, batch_size: int, seed: int,
                 transform: Callable[..., torch.Tensor] | None = None, device: torch.device | str = "cpu",
                 rank: int = 0, world_size: int = 1):
        super().__init__(len(data), batch_size, seed, rank, world_size, "videos")
        self.data, self.transform, self.device = data, transform, torch.device(device)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch: (the transformed samples, int64 labels ``(B,)``), on ``device``."""
        rows, generator = self.next_rows()
        x, y = collate_videos([self.data.get(int(i), generator) for i in rows], self.device)
        if self.transform is not None:
            x = self.transform(x, generator=generator)
        return x, y
