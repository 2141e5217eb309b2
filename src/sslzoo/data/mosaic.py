"""``cifar10-mosaic``: a CPU-scale segmentation benchmark made of real CIFAR-10 images.

A synthetic layout of real images: each mosaic is a grid of CIFAR-10 images (2x2 or 3x3 by default, drawn per mosaic),
each image resized to its tile, and every pixel is labelled with the class of the image its tile shows (10 classes,
no ignore pixels). The tile boundaries are jittered around the even split (up to a quarter of a tile either way), so
most of them fall inside a patch of any patch size, and the upsampling and the handling of mixed patches count.

Train mosaics are built from CIFAR-10's train images, val mosaics from its test images, each source image used at
most once per split until the split runs out. Everything is drawn from ``numpy.random.default_rng([seed, split])``:
the same seed and source give the same mosaics, bit for bit. Building the default 1,000 + 300 mosaics decodes only
the ~8,500 source images they use and takes a few seconds.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .binary import binary_format, cifar_split
from .datasets import _named_root
from .decode import DatasetFormatError, decode_all
from .folders import imagefolder_listing
from .segmentation import InMemorySegmentation

MOSAIC = "cifar10-mosaic"
MOSAIC_VERSION = 1  # bump when the drawing or the layout changes: the feature cache is keyed by it
DEFAULT_COUNTS = {"train": 1000, "val": 300}
DEFAULT_SIZE = 96
DEFAULT_GRIDS = (2, 3)
JITTER = 0.25  # a boundary moves by up to this share of a tile from the even split
MIN_TILE = 4  # pixels


def tile_cuts(rng: np.random.Generator, tiles: int, size: int) -> list[int]:
    """Boundaries ``[0, c1, ..., size]`` of ``tiles`` tiles along one side, jittered, each at least ``MIN_TILE``."""
    step = size / tiles
    cuts = [0]
    for i in range(1, tiles):
        c = int(round(i * step + rng.uniform(-JITTER, JITTER) * step))
        cuts.append(min(max(c, cuts[-1] + MIN_TILE), size - MIN_TILE * (tiles - i)))
    return cuts + [size]


def build_mosaics(
    labels: np.ndarray, pick: Callable[[np.ndarray], torch.Tensor], *, count: int, size: int,
    grids: Sequence[int], rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` mosaics of ``size`` x ``size`` from source images ``pick(indices) -> uint8 (T, 3, h, w)``.

    Returns:
        ``(images uint8 (count, 3, size, size), masks uint8 (count, size, size))``.
    """
    if min(grids) < 1 or size < MIN_TILE * max(grids):
        raise ValueError(f"grids {list(grids)} do not fit in {size} px tiles of at least {MIN_TILE} px")
    layouts = []
    for _ in range(count):
        n = int(rng.choice(np.asarray(grids)))
        layouts.append((tile_cuts(rng, n, size), tile_cuts(rng, n, size)))
    needed = sum((len(ys) - 1) * (len(xs) - 1) for ys, xs in layouts)
    order = np.concatenate([rng.permutation(len(labels)) for _ in range(-(-needed // len(labels)))])[:needed]
    sources = pick(order)
    images = torch.empty(count, 3, size, size, dtype=torch.uint8)
    masks = torch.empty(count, size, size, dtype=torch.uint8)
    t = 0
    for m, (ys, xs) in enumerate(layouts):
        for r in range(len(ys) - 1):
            for c in range(len(xs) - 1):
                h, w = ys[r + 1] - ys[r], xs[c + 1] - xs[c]
                tile = F.interpolate(sources[t : t + 1].float(), size=(h, w), mode="bilinear", antialias=True,
                                     align_corners=False)
                images[m, :, ys[r] : ys[r + 1], xs[c] : xs[c + 1]] = tile[0].round().clamp(0, 255).to(torch.uint8)
                masks[m, ys[r] : ys[r + 1], xs[c] : xs[c + 1]] = int(labels[order[t]])
                t += 1
    return images, masks


def _source(source: Optional[str], split: str) -> tuple[np.ndarray, Callable[[np.ndarray], torch.Tensor], list[str],
                                                         str]:
    """CIFAR-10's labels, a picker of its images, its classes and its fingerprint: train for train, test for val."""
    part = "train" if split == "train" else "test"
    root = _named_root("cifar10") if source is None else Path(source).expanduser()
    binary = binary_format(root) if root.is_dir() else None
    if binary is not None:
        decoded = cifar_split(binary[1], part, binary[0] == "cifar100")
        return decoded.labels.numpy(), lambda idx: decoded.images[torch.from_numpy(idx)], decoded.classes, \
            decoded.fingerprint
    if not root.is_dir():
        raise DatasetFormatError(f"{root} does not exist: {MOSAIC}:PATH needs a CIFAR-10 ImageFolder tree or the"
                                 " cifar-10-batches-py folder.")
    listing = imagefolder_listing(root, part, None, 0.1, 0)

    def pick(idx: np.ndarray) -> torch.Tensor:
        unique, inverse = np.unique(idx, return_inverse=True)  # each file decoded once
        paths = [listing.files[i] for i in unique]
        return decode_all(paths, [str(p) for p in paths], None)[torch.from_numpy(inverse)]

    return np.asarray(listing.labels), pick, listing.classes, listing.fingerprint


def cifar10_mosaic(
    split: str, *, source: Optional[str] = None, count: Optional[int] = None, size: int = DEFAULT_SIZE,
    grids: Sequence[int] = DEFAULT_GRIDS, seed: int = 0,
) -> InMemorySegmentation:
    """The ``train`` or ``val`` mosaics of CIFAR-10 (see the module docstring).

    Args:
        split: ``train`` (from CIFAR-10 train) or ``val`` (from CIFAR-10 test).
        source: a CIFAR-10 ImageFolder tree (``train/``, ``test/``) or ``cifar-10-batches-py`` folder; default
            torchvision's CIFAR-10 in the cache, downloaded where the network is.
        count: mosaics (default 1,000 train, 300 val). size: their side in pixels. grids: the tiles per side, one
            drawn per mosaic. seed: everything drawn follows from it.
    """
    if split not in DEFAULT_COUNTS:
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    count = DEFAULT_COUNTS[split] if count is None else int(count)
    labels, pick, classes, source_print = _source(source, split)
    rng = np.random.default_rng([seed, list(DEFAULT_COUNTS).index(split)])
    images, masks = build_mosaics(labels, pick, count=count, size=size, grids=grids, rng=rng)
    key = dict(version=MOSAIC_VERSION, source=source_print, split=split, count=count, size=size,
               grids=list(grids), seed=seed, jitter=JITTER)
    fingerprint = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return InMemorySegmentation(images, masks, classes, fingerprint, name=f"{MOSAIC} {split}")
