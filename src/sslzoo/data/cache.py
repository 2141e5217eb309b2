"""The decoded cache: an ImageFolder split decoded once and kept as a safetensors file keyed by its fingerprint."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import torch
from safetensors import SafetensorError, safe_open

from .. import files
from .decode import DecodedSplit, PathLike, decode_all
from .folders import imagefolder_listing

_logger = logging.getLogger(__name__)

def _cache_file(cache_dir: Optional[PathLike], fingerprint: str) -> Path:
    return (Path(cache_dir).expanduser() if cache_dir else files.cache_dir()) / "decoded" / f"{fingerprint}.safetensors"


def _read_cache(path: Path, fingerprint: str) -> Optional[DecodedSplit]:
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            images, labels = f.get_tensor("images"), f.get_tensor("labels")
        return DecodedSplit(images, labels, json.loads(meta["classes"]), fingerprint)
    except (SafetensorError, OSError, KeyError, ValueError) as e:
        _logger.warning("Ignoring unreadable decoded-data cache %s (%s); decoding again.", path, e)
        return None


def imagefolder_split(
    root: Path, split: str, cache_dir: Optional[PathLike], image_size: Optional[int], fraction: float, seed: int
) -> DecodedSplit:
    listing = imagefolder_listing(root, split, image_size, fraction, seed)
    path = _cache_file(cache_dir, listing.fingerprint)
    cached = _read_cache(path, listing.fingerprint)
    if cached is not None:
        return cached
    _logger.info("Decoding %d images of %s (%s) once; cached at %s", len(listing.files), root, split, path)
    images = decode_all(listing.files, [str(p) for p in listing.files], image_size)
    out = DecodedSplit(images, torch.tensor(listing.labels, dtype=torch.int64), listing.classes, listing.fingerprint)
    meta = {"classes": json.dumps(out.classes), "root": str(root), "split": split}
    files.save_safetensors({"images": out.images, "labels": out.labels}, path, metadata=meta)
    return out
