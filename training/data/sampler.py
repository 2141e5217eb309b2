"""Global batches: one seeded permutation per epoch, cut into global batches, each split into per-rank slices.

Iteration i of epoch e takes the global batch ``perm_e[i * G:(i + 1) * G]`` (the incomplete tail is dropped) and
rank r keeps the r-th contiguous slice of it. The union of the ranks' slices is the one-process batch at any world
size, and since every random number of a view is a function of (seed, epoch, sample) (``training.views.sample_draws``),
each rank decodes and augments only its own slice.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.data import Sampler

from sslzoo.errors import SslzooError


class DataConfigError(SslzooError, ValueError):
    """A data setting that cannot work (a batch larger than the data set, a batch not divisible by the world)."""


class ShardedBatches:
    """Seeded epoch permutations cut into global batches, each split into contiguous per-rank slices."""

    def __init__(self, num_images: int, global_batch: int, *, seed: int, rank: int = 0, world_size: int = 1) -> None:
        if global_batch % world_size:
            raise DataConfigError(f"the global batch {global_batch} must be divisible by the {world_size} processes.")
        if global_batch > num_images:
            raise DataConfigError(f"the batch size {global_batch} exceeds the {num_images} training images; "
                                  "lower --batch-size.")
        self.num_images, self.global_batch, self.seed = num_images, global_batch, seed
        self.rank, self.world_size = rank, world_size
        self.local_batch = global_batch // world_size
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    @property
    def iters_per_epoch(self) -> int:
        return self.num_images // self.global_batch

    def permutation(self, epoch: int) -> Tensor:
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.num_images, generator=g)
        return self._perm

    def global_indices(self, epoch: int, iteration: int) -> Tensor:
        """Dataset indices of the global batch of (0-based) ``iteration`` within ``epoch``."""
        start = iteration * self.global_batch
        return self.permutation(epoch)[start:start + self.global_batch]

    @property
    def local(self) -> slice:
        """This rank's slice of a global batch."""
        return slice(self.rank * self.local_batch, (self.rank + 1) * self.local_batch)

    def local_indices(self, epoch: int, iteration: int) -> Tensor:
        """Dataset indices of this rank's share of the global batch ``iteration`` of ``epoch``."""
        return self.global_indices(epoch, iteration)[self.local]


class EpochBatchSampler(Sampler[list[tuple[int, int]]]):
    """This rank's batches of one epoch from a given iteration on, as ``(epoch, index)`` items for a DataLoader.

    :meth:`set_position` chooses the epoch and the first iteration before each ``iter(loader)`` (resuming mid-epoch
    starts at the next unseen batch).
    """

    def __init__(self, batches: ShardedBatches) -> None:
        self.batches = batches
        self.epoch, self.start = 0, 0

    def set_position(self, epoch: int, start: int) -> None:
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return self.batches.iters_per_epoch - self.start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for i in range(self.start, self.batches.iters_per_epoch):
            yield [(self.epoch, int(j)) for j in self.batches.local_indices(self.epoch, i)]
