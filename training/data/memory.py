"""The in-memory path: a training split decoded once into one uint8 tensor, for small fixed-size sets (CIFAR, STL).

The whole split is ``sslzoo.data.decoded_split`` (cached on disk after the first decode); a batch is an index into
it, moved to the training device as float in [0, 1], and the crops are cut there, batched
(``training.views.geometry.crop_in_memory``), with the same per-sample boxes and flips the streaming path draws.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from sslzoo.data import decoded_split
from .batch import CropBatch, to_unit_float
from .sampler import ShardedBatches
from ..views.geometry import CropGuide, CropSpec, crop_in_memory, draw_geometry
from ..views.sample_draws import GEOMETRY, SampleDraws, sample_keys


@dataclass
class ImageSet:
    """Decoded images (uint8 (N, 3, H, W)) with labels (N,)."""

    images: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, indices: Tensor) -> ImageSet:
        return ImageSet(self.images[indices], self.labels[indices])

    def batches(self, indices: Tensor, batch_size: int, size: int) -> Iterator[Tensor]:
        """uint8 batches of the images ``indices``, in order (already at their stored size)."""
        for start in range(0, len(indices), batch_size):
            yield self.images[indices[start:start + batch_size]]


def load_split(root: str | Path, split: str, *, limit: int | None = None, seed: int = 0,
               cache_dir: str | Path | None = None) -> ImageSet:
    """A split of a data set as an :class:`ImageSet`; ``limit`` keeps a seeded random subset of that many images."""
    decoded = decoded_split(root, split, cache_dir=cache_dir)
    images = ImageSet(decoded.images, decoded.labels)
    if limit is not None and limit < len(images):
        keep = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:limit]
        images = images.subset(keep.sort().values)
    return images


class MemorySource:
    """This rank's crop batches from an :class:`ImageSet` held in memory."""

    mode = "memory"

    def __init__(self, data: ImageSet, batches: ShardedBatches, specs: list[CropSpec], *, seed: int,
                 guide: CropGuide | None, device: torch.device) -> None:
        self.data, self.batches, self.specs, self.seed, self.guide, self.device = data, batches, specs, seed, guide, device

    def __len__(self) -> int:
        return len(self.data)

    @property
    def eval_images(self) -> ImageSet:
        return self.data

    def epoch_batches(self, epoch: int, start: int) -> Iterator[CropBatch]:
        """The batches of ``epoch`` from iteration ``start`` on."""
        height, width = self.data.images.shape[-2:]
        for i in range(start, self.batches.iters_per_epoch):
            indices = self.batches.local_indices(epoch, i)
            images = to_unit_float(self.data.images[indices], self.device)
            draws = SampleDraws(sample_keys(self.seed, epoch, indices, GEOMETRY).to(self.device))
            geometry = draw_geometry(self.specs, height, width, draws, indices=indices.to(self.device), epoch=epoch,
                                     guide=self.guide)
            yield CropBatch(indices.to(self.device), crop_in_memory(images, geometry, self.specs), geometry, [])

    def close(self) -> None:
        """Nothing to release."""
