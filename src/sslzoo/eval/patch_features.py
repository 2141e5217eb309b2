"""Patch-token features of a whole dataset: ``(N, h, w, D)`` grids, cached, streamed to disk beyond a memory budget.

The tokens are read after the model's final norm: the last block (``layers=1``), or the last ``layers`` blocks, each
through the final norm, concatenated along the width (``layers=4`` is DINOv2's linear segmentation input). Images
(and masks, for segmentation data) are resized together to ``size x size``; a model built for another size gets its
position embeddings resampled by timm (``set_input_size``) on a copy, so the caller's model is never changed.

The cache is keyed like the CLS features' (weights sha256, transform, dataset fingerprint, pool ``patch``) plus
``layers`` and ``size``. Features larger than ``memory_budget`` bytes are written to disk batch by batch and returned
memory-mapped (see :mod:`sslzoo.eval.feature_store`); a kill during extraction leaves no cache entry behind.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import sys
from functools import partial
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .. import files
from ..data import DecodedSplit
from ..data.dense_transform import DenseTransform, dense_transform
from ..data.segmentation import InMemorySegmentation, SegmentationDataset
from ..errors import SslzooError
from ..validation import InvalidOptionError, int_at_least
from .feature_store import ChunkedSafetensors, nbytes, open_mapped, read_header, read_tensor
from .frozen import CPU_TOKENS_PER_PASS, dataset_fingerprint, decoded_split, feature_cache_file, weights_sha256

_logger = logging.getLogger(__name__)

PATCH_CACHE_VERSION = 1
PATCH_POOL = "patch"
DEFAULT_MEMORY_BUDGET = 2 * 2**30  # bytes of features held in memory; more are streamed to disk
MEMORY_BUDGET_ENV = "SSLZOO_FEATURE_MEMORY"  # overrides the default, in bytes


def memory_budget(value: Optional[int] = None) -> int:
    if value is not None:
        return int(value)
    return int(os.environ.get(MEMORY_BUDGET_ENV) or DEFAULT_MEMORY_BUDGET)


def patch_size_of(model: torch.nn.Module) -> int:
    p = model.patch_embed.patch_size
    p = (p, p) if isinstance(p, int) else tuple(p)
    if p[0] != p[1]:
        raise SslzooError(f"Dense evaluation needs square patches; this model's are {p[0]}x{p[1]}.")
    return int(p[0])


def native_size(model: torch.nn.Module) -> int:
    return int(model.patch_embed.img_size[0])


def check_size(size: Optional[int], patch: int) -> Optional[int]:
    """``size`` when it is a positive multiple of ``patch``; else one line naming the nearest valid sizes."""
    if size is None:
        return None
    int_at_least("size", size)
    if size % patch:
        below, above = size - size % patch, size - size % patch + patch
        near = f"{below} or {above}" if below else f"{above}"
        raise InvalidOptionError(f"size (--size) {size} is not a multiple of the patch size {patch}: use {near}.")
    return int(size)


def check_layers(layers: int, depth: Optional[int] = None) -> int:
    int_at_least("layers", layers)
    if depth is not None and layers > depth:
        raise InvalidOptionError(f"layers (--layers) {layers} exceeds the model's {depth} blocks: use 1 to {depth}.")
    return int(layers)


def sized_model(model: torch.nn.Module, size: int) -> torch.nn.Module:
    """``model`` for ``size x size`` inputs: itself, or a copy with its position embeddings resampled by timm."""
    if not hasattr(model, "set_input_size") or tuple(model.patch_embed.img_size) == (size, size):
        return model
    clone = copy.deepcopy(model)
    clone.set_input_size(img_size=(size, size))
    return clone


def patch_tokens(model: torch.nn.Module, x: torch.Tensor, layers: int = 1) -> torch.Tensor:
    """The normed patch tokens of the last ``layers`` blocks, concatenated: ``(B, h, w, layers * D)``."""
    grids = model.forward_intermediates(x, indices=layers, norm=True, output_fmt="NLC", intermediates_only=True)
    b, _, height, width = x.shape
    p = patch_size_of(model)
    return torch.cat(list(grids), dim=-1).view(b, height // p, width // p, -1)


def _collate(tf: DenseTransform, segmentation: bool, items: list[tuple[Any, Any]]):
    images, targets = zip(*items)
    if images[0].dtype != torch.uint8:
        raise SslzooError("Patch features take uint8 images (the dense transform resizes and normalises them); this"
                          " dataset's transform already made floats: open it without one.")
    images = torch.stack([tf.resize_image(im) for im in images])
    if segmentation:
        return images, torch.stack([tf.resize_mask(m) for m in targets])
    return images, torch.as_tensor(targets, dtype=torch.int64)


def _batches(dataset: Union[Dataset, DecodedSplit], tf: DenseTransform, batch_size: int,
             num_workers: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """uint8 images at ``size`` and their targets: masks at ``size`` or class labels."""
    split = decoded_split(dataset)
    if split is not None:
        dataset = split
    if isinstance(dataset, InMemorySegmentation):
        for start in range(0, len(dataset), batch_size):
            stop = start + batch_size
            yield tf.resize_image(dataset.images[start:stop]), tf.resize_mask(dataset.masks[start:stop])
    elif isinstance(dataset, DecodedSplit):
        for start in range(0, len(dataset), batch_size):
            yield tf.resize_image(dataset.images[start : start + batch_size]), dataset.labels[start : start + batch_size]
    else:
        yield from DataLoader(dataset, batch_size=batch_size, num_workers=num_workers,
                              collate_fn=partial(_collate, tf, isinstance(dataset, SegmentationDataset)))


def _key(model: torch.nn.Module, dataset: Any, tf: DenseTransform, layers: int, cache_key: Optional[str]) -> dict:
    return {"version": str(PATCH_CACHE_VERSION), "weights_sha256": weights_sha256(model),
            "transform": tf.describe(), "dataset": dataset_fingerprint(dataset, cache_key), "cache_key": str(cache_key),
            "pool": PATCH_POOL, "layers": str(layers), "size": str(tf.size)}


def patch_cache_file(key: dict, cache_dir: Optional[Union[str, Path]]) -> Path:
    return feature_cache_file(key, cache_dir, prefix="patch-")


def _load(path: Path, budget: int) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    try:
        header, _ = read_header(path)
        big = nbytes(header["features"]["shape"], torch.float32) > budget
        return (open_mapped(path, "features") if big else read_tensor(path, "features")), read_tensor(path, "labels")
    except (OSError, KeyError, ValueError) as e:
        _logger.warning("ignoring unreadable feature cache %s (%s)", path, e)
        return None


def _device(model: torch.nn.Module, device: Optional[Union[str, torch.device]]) -> torch.device:
    if device is not None:
        return torch.device(device)
    first = next(iter(model.parameters()), None)
    return first.device if first is not None else torch.device("cpu")


def extract_patch_features(
    model: torch.nn.Module,
    dataset: Union[SegmentationDataset, DecodedSplit, Dataset],
    *,
    layers: int = 1,
    size: Optional[int] = None,
    batch_size: int = 64,
    num_workers: int = 0,
    device: Optional[Union[str, torch.device]] = None,
    progress: bool = True,
    cache_dir: Optional[Union[str, Path]] = None,
    cache_key: Optional[str] = None,
    memory_budget_bytes: Optional[int] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Patch-token grids of every image of ``dataset`` through a frozen ``model``.

    Args:
        dataset: segmentation data (items ``(uint8 image, uint8 mask)``) or classification data (``(image, label)``:
            a DecodedSplit or a dataset of uint8 images).
        layers: the last ``layers`` blocks, concatenated (1: the last block; 4: DINOv2's linear input).
        size: the square input side, a multiple of the patch size; default the model's own.
        cache_dir, cache_key: as :func:`~sslzoo.eval.features.extract_features`; the key adds layers and size.
        memory_budget_bytes: features beyond this are written to disk and returned memory-mapped (default 2 GiB,
            or ``$SSLZOO_FEATURE_MEMORY``).

    Returns:
        ``(features float32 (N, h, w, layers * D), targets)`` with ``h = w = size / patch``; the targets are the
        masks resized to ``size`` (``uint8 (N, size, size)``) for segmentation data, else the labels ``(N,)``.
    """
    patch = patch_size_of(model)
    size = check_size(size, patch) or native_size(model)
    check_layers(layers, len(model.blocks) if hasattr(model, "blocks") else None)
    int_at_least("batch_size", batch_size)
    if len(dataset) == 0:
        raise SslzooError("The dataset is empty: there is nothing to extract features from.")
    tf = dense_transform(model, size)
    budget = memory_budget(memory_budget_bytes)
    path = key = None
    if cache_dir is not None or cache_key is not None:
        key = _key(model, dataset, tf, layers, cache_key)
        path = patch_cache_file(key, cache_dir)
        if path.is_file():
            cached = _load(path, budget)
            if cached is not None:
                return cached
    device = _device(model, device)
    net = sized_model(model, size)
    grid = size // patch
    n = len(dataset)
    segmentation = isinstance(dataset, SegmentationDataset)
    target_shape, target_dtype = ((n, size, size), torch.uint8) if segmentation else ((n,), torch.int64)
    feats = writer = None  # made at the first batch, which gives the feature width
    streamed = False
    targets = torch.empty(target_shape, dtype=target_dtype)
    was_training = net.training
    net.eval()
    chunk = batch_size if device.type != "cpu" else max(1, min(batch_size, CPU_TOKENS_PER_PASS // (grid * grid + 1)))
    bar = tqdm(total=n, unit="img", desc=f"patch features ({size} px)", disable=not progress or not sys.stderr.isatty())
    row = 0
    try:
        with torch.inference_mode():
            for images, target in _batches(dataset, tf, batch_size, num_workers):
                x = tf.normalize(images.to(device, non_blocking=True))
                out = torch.cat([patch_tokens(net, part, layers).float().cpu()
                                 for part in x.chunk(math.ceil(len(x) / chunk))])
                if row == 0:
                    shape = (n, grid, grid, out.shape[-1])
                    streamed = nbytes(shape, torch.float32) > budget
                    if path is not None or streamed:
                        scratch = (Path(cache_dir).expanduser() if cache_dir is not None else files.cache_dir())
                        writer = ChunkedSafetensors(path, {"features": (shape, torch.float32),
                                                           "labels": (target_shape, target_dtype)},
                                                    key, scratch_dir=scratch / "features")
                    feats = None if streamed else torch.empty(shape)
                if feats is not None:
                    feats[row : row + len(out)] = out
                targets[row : row + len(out)] = target
                if writer is not None:
                    writer.write("features", row, out)
                    writer.write("labels", row, target)
                row += len(out)
                bar.update(len(out))
        if writer is not None:
            written = writer.commit()
            if streamed:
                feats = open_mapped(written, "features")
                if path is None:
                    written.unlink(missing_ok=True)  # the mapping keeps the data; nothing is left on disk
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        bar.close()
        net.train(was_training)
    return feats, targets
