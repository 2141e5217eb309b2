"""The training input pipeline: decoded uint8 images in memory, a seeded sharded sampler, per-step generators.

There are no DataLoader workers: the whole training split is one uint8 tensor (``sslzoo.data.decoded_split``, cached
on disk after the first decode); a batch is an index into it, moved to the training device and converted to float
in [0, 1]; the batched tensor augmentations of ``training.views`` run on that device.

Global-batch semantics: every epoch has one seeded permutation of the training set; iteration i of the epoch takes
the global batch ``perm[i * G:(i + 1) * G]`` (the incomplete tail is dropped) and rank r keeps the r-th contiguous
slice of it. The views of the *global* batch are drawn by every rank from the same per-iteration generator
(:func:`step_generator`) before slicing, so the union of the ranks' inputs is exactly the one-process batch at any
world size (the augmentation is cheap next to the model step).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from sslzoo.data import decoded_split
from sslzoo.errors import SslzooError


class DataConfigError(SslzooError, ValueError):
    """A data setting that cannot work (a batch larger than the data set, a batch not divisible by the world)."""


@dataclass
class ImageSet:
    """Decoded images (uint8 (N, 3, H, W)) with labels (N,)."""

    images: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, indices: Tensor) -> ImageSet:
        return ImageSet(self.images[indices], self.labels[indices])


def load_split(root: str | Path, split: str, *, limit: int | None = None, seed: int = 0,
               cache_dir: str | Path | None = None) -> ImageSet:
    """A split of a data set as an :class:`ImageSet`; ``limit`` keeps a seeded random subset of that many images."""
    decoded = decoded_split(root, split, cache_dir=cache_dir)
    images = ImageSet(decoded.images, decoded.labels)
    if limit is not None and limit < len(images):
        keep = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:limit]
        images = images.subset(keep.sort().values)
    return images


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


def to_unit_float(images: Tensor, device: torch.device) -> Tensor:
    """uint8 (B, 3, H, W) -> float32 in [0, 1] on ``device`` (the copy happens on uint8, 4x fewer bytes)."""
    return images.to(device, non_blocking=True).float().div_(255.0)


def step_generator(seed: int, iteration: int, device: torch.device) -> torch.Generator:
    """The generator of one training iteration's views: the same on every rank, independent of resuming."""
    return torch.Generator(device=device).manual_seed((seed * 1_000_003 + iteration) % (2**63 - 1))
