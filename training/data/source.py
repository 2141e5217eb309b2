"""The training input, in memory or streamed, and the rule that chooses between them (``--data-mode``).

- ``memory``: the split decoded once into one uint8 tensor (``training.data.memory``): CIFAR and STL binaries, named
  data sets, and ImageFolder trees of one image size that fit the memory budget.
- ``stream``: DataLoader workers decode files and cut the crops (``training.data.stream``): any ImageFolder tree
  or file list, mixed image sizes, ImageNet.
- ``auto`` (the default): memory for binaries and named sets; for a tree, memory when its first image's size times
  the number of files fits :func:`memory_budget` and all images share that size, else stream; stream for a file
  list.

Both give the method the same things: per-rank :class:`CropBatch` es with the same boxes, flips and derived inputs
for the same images (the crops' pixels differ only by the resampling: antialiased uint8 crops when streaming,
float crops of the stored images in memory).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Subset

from sslzoo.data import MixedImageSizesError, NAMED_DATASETS
from sslzoo.data.binary import binary_format
from .batch import CropBatch, to_unit_float
from .file_list import FileList, is_list_file, list_image_files
from .memory import ImageSet, load_split
from .sampler import DataConfigError, EpochBatchSampler, ShardedBatches
from .stream import StreamCrops, WholeImages
from ..views.crops import ViewGeometry
from ..views.geometry import CropGuide, CropSpec

DATA_MODES = ("auto", "memory", "stream")
_logger = logging.getLogger(__name__)


def memory_budget() -> int:
    """Bytes a decoded training split may take in memory: a quarter of RAM, at most 8 GiB."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = 16 << 30
    return min(8 << 30, ram // 4)


def _is_binary(data: str) -> bool:
    path = Path(data).expanduser()
    return (data in NAMED_DATASETS and not path.exists()) or (path.is_dir() and binary_format(path) is not None)


def _sizes(files: FileList, count: int = 16) -> set[tuple[int, int]]:
    """The sizes of the first ``count`` images, read from their headers."""
    from PIL import Image

    sizes = set()
    for path in files.paths[:count]:
        try:
            with Image.open(path) as im:
                sizes.add(im.size)
        except (OSError, SyntaxError, ValueError):  # an unreadable file is the streaming loop's to report
            continue
    return sizes or {(0, 0)}


def choose_mode(cfg: dict[str, Any]) -> tuple[str, FileList | None, ImageSet | None]:
    """(mode, the file list when streaming, the decoded split when in memory) for the config's data."""
    mode, data = cfg["data_mode"], str(cfg["data"])  # a mode in DATA_MODES (training.config.validate)
    binary = _is_binary(data)
    if mode == "stream" and binary:
        raise DataConfigError(f"{data} is a binary data set, read into memory only; use --data-mode memory or auto, "
                              "or pass an ImageFolder tree or a file list to stream.")
    if mode == "memory" or binary:
        if is_list_file(data):
            raise DataConfigError(f"{data} is a file list, which is streamed; use --data-mode stream or auto.")
        try:
            return "memory", None, _memory_split(cfg)
        except MixedImageSizesError as e:
            raise DataConfigError(f"{e} Or stream the files: --data-mode stream (or auto).") from None
    files = list_image_files(data, "train", cache_dir=cfg["cache_dir"], seed=cfg["seed"]).subset(
        cfg["train_limit"], cfg["seed"])
    if mode == "stream" or is_list_file(data):
        return "stream", files, None
    sizes = _sizes(files)
    if len(sizes) > 1:
        _logger.info("Streaming %s: its images differ in size.", data)
        return "stream", files, None
    width, height = sizes.pop()
    if 3 * width * height * len(files) > memory_budget():
        _logger.info("Streaming %s: %d images would not fit the in-memory budget (%.1f GiB).", data, len(files),
                     memory_budget() / 2**30)
        return "stream", files, None
    try:
        return "memory", None, _memory_split(cfg)
    except MixedImageSizesError:
        _logger.info("Streaming %s: its images differ in size.", data)
        return "stream", files, None


def _memory_split(cfg: dict[str, Any]) -> ImageSet:
    return load_split(cfg["data"], "train", limit=cfg["train_limit"], seed=cfg["seed"], cache_dir=cfg["cache_dir"],
                      strict=cfg["strict_data"])


class StreamEvalImages:
    """The training files for passes without augmentation, decoded by workers."""

    def __init__(self, files: FileList, workers: int) -> None:
        self.files, self.workers = files, workers

    def __len__(self) -> int:
        return len(self.files)

    def batches(self, indices: Tensor, batch_size: int, size: int) -> Iterator[Tensor]:
        subset = Subset(WholeImages(self.files, size), indices.tolist())
        yield from DataLoader(subset, batch_size=batch_size, num_workers=self.workers, shuffle=False)

    def decoded(self, indices: Tensor, size: int) -> ImageSet:
        """The images ``indices`` resized whole to ``size``, in memory, with their labels."""
        images = torch.cat(list(self.batches(indices, 256, size)))
        return ImageSet(images, torch.tensor([self.files.labels[i] for i in indices.tolist()], dtype=torch.int64))


class StreamSource:
    """This rank's crop batches, decoded and cropped by DataLoader workers."""

    mode = "stream"

    def __init__(self, files: FileList, batches: ShardedBatches, specs: list[CropSpec], *, seed: int,
                 guide: CropGuide | None, device: torch.device, workers: int, prefetch: int = 2) -> None:
        self.files, self.device = files, device
        self.sampler = EpochBatchSampler(batches)
        cuda = device.type == "cuda"
        self.loader = DataLoader(StreamCrops(files, specs, seed=seed, guide=guide), batch_sampler=self.sampler,
                                 num_workers=workers, pin_memory=cuda, persistent_workers=workers > 0,
                                 prefetch_factor=prefetch if workers > 0 else None)
        self.eval_images = StreamEvalImages(files, workers)

    def __len__(self) -> int:
        return len(self.files)

    def epoch_batches(self, epoch: int, start: int) -> Iterator[CropBatch]:
        self.sampler.set_position(epoch, start)
        for batch in self.loader:
            geometry = {k: ViewGeometry(batch["boxes"][k].to(self.device), batch["flipped"][k].to(self.device))
                        for k in batch["boxes"]}
            crops = {k: to_unit_float(v, self.device) for k, v in batch["crops"].items()}
            yield CropBatch(batch["index"].to(self.device), crops, geometry, [b for b in batch["bad"] if b])

    def close(self) -> None:
        """Stop the persistent workers."""
        self.loader = None

