"""The in-memory path: a training split decoded once into one uint8 tensor, for small fixed-size sets (CIFAR, STL).

The whole split is ``sslzoo.data.decoded_split`` (cached on disk after the first decode); a batch is an index into
it, moved to the training device as float in [0, 1], and the crops are cut there, batched
(``training.views.geometry.crop_in_memory``), with the same per-sample boxes and flips the streaming path draws.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from sslzoo.data import UnreadableImagesError, decoded_split
from sslzoo.data.decode import decode_replacing
from sslzoo.data.folders import DEFAULT_SPLIT_FRACTION, imagefolder_listing
from ..errors import UnreadableImageError
from .batch import CropBatch, to_unit_float
from .sampler import ShardedBatches
from ..views.geometry import CropGuide, CropSpec, crop_in_memory, draw_geometry
from ..views.sample_draws import GEOMETRY, SampleDraws, sample_keys

_logger = logging.getLogger(__name__)


@dataclass
class ImageSet:
    """Decoded images (uint8 (N, 3, H, W)) with labels (N,); ``unreadable``: index -> the file (and why) whose slot
    holds the next readable image instead, the streaming rule."""

    images: Tensor
    labels: Tensor
    unreadable: dict[int, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, indices: Tensor) -> ImageSet:
        kept = {new: self.unreadable[old] for new, old in enumerate(indices.tolist()) if old in self.unreadable}
        return ImageSet(self.images[indices], self.labels[indices], kept)

    def replaced_in(self, indices: Tensor) -> list[str]:
        """The unreadable files among ``indices``, once per occurrence (what the loop logs and counts)."""
        return [self.unreadable[i] for i in indices.tolist() if i in self.unreadable] if self.unreadable else []

    def batches(self, indices: Tensor, batch_size: int, size: int) -> Iterator[Tensor]:
        """uint8 batches of the images ``indices``, in order (already at their stored size)."""
        for start in range(0, len(indices), batch_size):
            yield self.images[indices[start:start + batch_size]]


def load_split(root: str | Path, split: str, *, limit: int | None = None, seed: int = 0,
               cache_dir: str | Path | None = None, strict: bool = False) -> ImageSet:
    """A split of a data set as an :class:`ImageSet`; ``limit`` keeps a seeded random subset of that many images.

    Unreadable image files are replaced by the next readable one and listed in ``unreadable`` (the loop logs and
    counts them as it meets them, as when streaming); ``strict`` (``--strict-data``) refuses them instead, by name.
    """
    try:
        decoded = decoded_split(root, split, cache_dir=cache_dir)
        images = ImageSet(decoded.images, decoded.labels)
    except UnreadableImagesError as e:
        if strict:
            raise UnreadableImageError(f"{e} Or drop --strict-data to replace each by the next readable file and "
                                       "go on.") from None
        images = _replacing_unreadable(Path(root).expanduser(), split)
    if limit is not None and limit < len(images):
        keep = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:limit]
        images = images.subset(keep.sort().values)
    return images


def _replacing_unreadable(root: Path, split: str) -> ImageSet:
    """An ImageFolder split decoded with its unreadable files replaced (not cached: the cache holds whole splits)."""
    listing = imagefolder_listing(root, split, None, DEFAULT_SPLIT_FRACTION, 0)
    images, bad = decode_replacing(listing.files, [str(p) for p in listing.files], None)
    _logger.warning("%d unreadable image(s) in %s (%s): each is replaced by the next readable file, logged when a batch"
                    " meets it and counted in log.csv's replaced_images; --strict-data stops instead.", len(bad), root,
                    ", ".join(name for _, name, _ in bad[:3]) + (", ..." if len(bad) > 3 else ""))
    return ImageSet(images, torch.tensor(listing.labels, dtype=torch.int64),
                    {i: f"{name} ({reason})" for i, name, reason in bad})


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
            yield CropBatch(indices.to(self.device), crop_in_memory(images, geometry, self.specs), geometry,
                            self.data.replaced_in(indices))

    def close(self) -> None:
        """Nothing to release."""
