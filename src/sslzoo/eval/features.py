"""Frozen-backbone features of a whole dataset, batched, with an optional cache on disk.

Pools (all read after the model's final norm):

- ``cls``: the class token, ``model.forward_features(x)[:, 0]``.
- ``avg``: the mean of the patch tokens (prefix tokens excluded).
- ``cls+avg``: both, concatenated (``2 * D``).
- ``last4``: the class tokens of the last four blocks, each through the final norm, concatenated (``4 * D``):
  DINO's linear-evaluation protocol (``get_intermediate_layers(x, 4)``).
"""

from __future__ import annotations

import logging
import math
import sys
from functools import partial
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import torch
from safetensors import SafetensorError, safe_open
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .. import files
from ..data import DecodedSplit, EvalTransform, eval_transform
from ..errors import SslzooError
from ..validation import int_at_least
from .frozen import CPU_TOKENS_PER_PASS, dataset_fingerprint, decoded_split, feature_cache_file
from .frozen import weights_sha256  # noqa: F401 - re-exported
from .patch_features import PATCH_POOL, extract_patch_features
from .protocol_table import POOLS

_logger = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when what a cached feature file means changes


def pool_features(model: torch.nn.Module, x: torch.Tensor, pool: str = "cls") -> torch.Tensor:
    """Features of one batch of model-ready images ``(B, 3, H, W)``; see the module docstring for the pools."""
    if pool not in POOLS:
        raise ValueError(f"Unknown pool {pool!r}: use one of {', '.join(POOLS)}.")
    if pool in ("cls", "cls+avg", "last4") and getattr(model, "cls_token", None) is None:
        raise SslzooError(f"pool={pool!r} needs a class token, and this model has none: use pool='avg'.")
    if pool == "last4":
        if len(model.blocks) < 4:
            raise SslzooError(f"pool='last4' needs at least 4 blocks, the model has {len(model.blocks)}.")
        layers = model.forward_intermediates(
            x, indices=4, return_prefix_tokens=True, norm=True, output_fmt="NLC", intermediates_only=True
        )
        return torch.cat([prefix[:, 0] for _, prefix in layers], dim=-1)
    tokens = model.forward_features(x)
    if pool == "cls":
        return tokens[:, 0]
    avg = tokens[:, model.num_prefix_tokens :].mean(dim=1)
    return avg if pool == "avg" else torch.cat([tokens[:, 0], avg], dim=-1)


def images_per_pass(model: torch.nn.Module, device: torch.device, batch_size: int) -> int:
    """How many images one forward pass takes: the whole batch on an accelerator, ~4096 tokens' worth on CPU."""
    if device.type != "cpu":
        return batch_size
    tokens = model.patch_embed.num_patches + getattr(model, "num_prefix_tokens", 0)
    return max(1, min(batch_size, CPU_TOKENS_PER_PASS // tokens))


def _collate(transform: EvalTransform, items: list[tuple[Any, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack a batch; uint8 images of different sizes are brought to the model's size first."""
    images, labels = zip(*items)
    if images[0].dtype == torch.uint8 and len({tuple(im.shape) for im in images}) > 1:
        images = [transform(im) for im in images]
    return torch.stack(images), torch.as_tensor(labels, dtype=torch.int64)


def _batches(
    dataset: Union[DecodedSplit, Dataset], transform: EvalTransform, batch_size: int, num_workers: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    split = decoded_split(dataset)
    if split is not None:  # no DataLoader: slices of the uint8 tensor, transformed batch-wise
        for i in range(0, len(split), batch_size):
            yield split.images[i : i + batch_size], split.labels[i : i + batch_size]
        return
    yield from DataLoader(
        dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=partial(_collate, transform)
    )


def _cache_file(
    model: torch.nn.Module,
    dataset: Union[DecodedSplit, Dataset],
    transform: EvalTransform,
    pool: str,
    cache_dir: Optional[Union[str, Path]],
    cache_key: Optional[str],
) -> tuple[Path, dict[str, str]]:
    fingerprint = dataset_fingerprint(dataset, cache_key)
    own_transform = getattr(dataset, "transform", None)
    key = {
        "version": str(CACHE_VERSION),
        "weights_sha256": weights_sha256(model),
        "transform": repr(own_transform) if own_transform is not None else transform.describe(),
        "dataset": fingerprint,
        "cache_key": str(cache_key),
        "pool": pool,
    }
    return feature_cache_file(key, cache_dir), key


def _read_cached(path: Path) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.get_tensor("features"), f.get_tensor("labels")
    except (SafetensorError, OSError) as e:
        _logger.warning("ignoring unreadable feature cache %s (%s)", path, e)
        return None


def extract_features(
    model: torch.nn.Module,
    dataset: Union[DecodedSplit, Dataset],
    *,
    pool: str = "cls",
    batch_size: int = 256,
    num_workers: int = 0,
    device: Optional[Union[str, torch.device]] = None,
    progress: bool = True,
    cache_dir: Optional[Union[str, Path]] = None,
    cache_key: Optional[str] = None,
    layers: int = 1,
    size: Optional[int] = None,
    memory_budget_bytes: Optional[int] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of every image of ``dataset`` through a frozen ``model``.

    Args:
        model: a timm ``VisionTransformer``; run in eval mode (its mode is restored afterwards).
        dataset: a :class:`~sslzoo.data.DecodedSplit` (fastest: uint8 batches transformed on the fly), a dataset from
            :func:`~sslzoo.data.open_dataset`, or any Dataset of ``(image, label)``. uint8 images go through the
            model's eval transform (:func:`~sslzoo.data.eval_transform`); float images are used as they are.
        pool: ``cls``, ``avg``, ``cls+avg`` or ``last4``; or ``patch``: the patch-token grids ``(N, h, w, D)``
            of :func:`~sslzoo.eval.patch_features.extract_patch_features` (which alone takes ``layers``, ``size``
            and ``memory_budget_bytes``, and segmentation datasets).
        batch_size: images per batch (loading and transform); on CPU the model takes each batch in chunks of
            about 4096 tokens, which runs faster than one large pass.
        num_workers: DataLoader workers (datasets only; a DecodedSplit needs none).
        device: where the model runs; default the device of its parameters.
        progress: show a progress bar (only on a terminal).
        cache_dir: cache the features here (``features/<key>.safetensors``), keyed by the sha256 of the weights,
            the transform, the dataset's fingerprint and the pool. Without ``cache_dir`` or ``cache_key`` nothing is
            cached.
        cache_key: a string mixed into the key; required to cache a dataset without a ``fingerprint``. Alone, it
            caches under ``$SSLZOO_CACHE`` (default ``~/.cache/sslzoo``).

    Returns:
        ``(features float32 (N, D'), labels int64 (N,))`` on the CPU.
    """
    if pool == PATCH_POOL:
        return extract_patch_features(
            model, dataset, layers=layers, size=size, batch_size=batch_size, num_workers=num_workers, device=device,
            progress=progress, cache_dir=cache_dir, cache_key=cache_key, memory_budget_bytes=memory_budget_bytes)
    if pool not in POOLS:
        raise ValueError(f"Unknown pool {pool!r}: use one of {', '.join(POOLS)} or {PATCH_POOL}.")
    if (layers, size, memory_budget_bytes) != (1, None, None):
        raise ValueError("layers, size and memory_budget_bytes apply to pool='patch' only.")
    int_at_least("batch_size", batch_size)
    int_at_least("num_workers", num_workers, 0)
    if len(dataset) == 0:
        raise SslzooError("The dataset is empty: there is nothing to extract features from.")
    tf = eval_transform(model)
    path = None
    if cache_dir is not None or cache_key is not None:
        path, key = _cache_file(model, dataset, tf, pool, cache_dir, cache_key)
        cached = _read_cached(path)
        if cached is not None:
            return cached
    device = torch.device(device) if device is not None else next(model.parameters()).device
    chunk = images_per_pass(model, device, batch_size)
    feats, labels = [], []
    was_training = model.training
    model.eval()
    bar = tqdm(total=len(dataset), unit="img", desc="features", disable=not progress or not sys.stderr.isatty())
    try:
        with torch.inference_mode():
            for x, y in _batches(dataset, tf, batch_size, num_workers):
                x = x.to(device, non_blocking=True)
                if x.dtype == torch.uint8:
                    x = tf(x)
                parts = x.chunk(math.ceil(len(x) / chunk))  # equal parts: no tiny, slow remainder pass
                feats += [pool_features(model, part, pool).float().cpu() for part in parts]
                labels.append(torch.as_tensor(y, dtype=torch.int64))
                bar.update(len(x))
    finally:
        bar.close()
        model.train(was_training)
    out = torch.cat(feats), torch.cat(labels)
    if path is not None:
        files.save_safetensors({"features": out[0], "labels": out[1]}, path, metadata=key)
    return out
