"""Decoding images into ``uint8 (N, 3, H, W)`` RGB tensors: the :class:`DecodedSplit` every format ends as."""

from __future__ import annotations

import hashlib
import json
import io
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image

from ..errors import SslzooError

_logger = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when the decoded cache's layout or decoding changes: old cache files are then ignored
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")

NAMED_DATASETS = {
    "cifar10": ("cifar-10-batches-py", "CIFAR10", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
    "cifar100": ("cifar-100-python", "CIFAR100", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"),
    "stl10": ("stl10_binary", "STL10", "https://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz"),
}
FORMATS_HINT = (
    "an ImageFolder tree (train/ and test/ or val/ with one folder per class, or just the class folders), "
    "a cifar-10-batches-py, cifar-100-python or stl10_binary folder, or one of the names "
    f"{', '.join(['sample', *NAMED_DATASETS])}"
)

PathLike = Union[str, os.PathLike]


class DatasetNotFoundError(SslzooError, FileNotFoundError):
    """A dataset folder, split or file that does not exist."""


class DatasetFormatError(SslzooError, ValueError):
    """A dataset whose files are empty, corrupt, inconsistent or of an unexpected layout."""


class MixedImageSizesError(DatasetFormatError):
    """Images of one split that do not share one size, with no ``image_size`` to resize them to."""


NAMED_AT_MOST = 20  # unreadable files an error names; the rest are counted


class UnreadableImagesError(DatasetFormatError):
    """Images of one split that cannot be decoded, all found in one pass: ``bad`` holds (index, name, reason) each."""

    def __init__(self, bad: Sequence[tuple[int, str, str]], total: int) -> None:
        self.bad = list(bad)
        shown = "; ".join(f"{name} ({reason})" for _, name, reason in self.bad[:NAMED_AT_MOST])
        more = f"; and {len(self.bad) - NAMED_AT_MOST} more" if len(self.bad) > NAMED_AT_MOST else ""
        super().__init__(f"{len(self.bad)} of {total} images cannot be read: {shown}{more}. Remove or replace the "
                         f"file{'s' if len(self.bad) > 1 else ''}.")


@dataclass(frozen=True)
class DecodedSplit:
    """All images of one split, decoded.

    Attributes:
        images: ``uint8 (N, 3, H, W)`` RGB.
        labels: ``int64 (N,)`` indices into ``classes`` (-1 for unlabelled images).
        classes: class names, in label order.
        fingerprint: identifies the split's content (files, sizes, modification times, decoding options).
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    fingerprint: str

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must be uint8 (N, 3, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (len(self.images),):
            raise ValueError(f"{len(self.images)} images but labels of shape {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return len(self.images)


def fingerprint_files(header: dict[str, Any], root: Path, files: Sequence[Path]) -> str:
    """sha256 of the decoding options and of each file's path (relative to ``root``), size and modification time."""
    h = hashlib.sha256(json.dumps({"format_version": FORMAT_VERSION, **header}, sort_keys=True).encode())
    for path in files:
        st = path.stat()
        h.update(f"{path.relative_to(root).as_posix()}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def load_rgb(source: Union[Path, bytes], image_size: Optional[int] = None, name: Optional[str] = None) -> np.ndarray:
    """Decode one image to ``uint8 (H, W, 3)``; ``image_size`` resizes the shorter side, then crops the centre."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
            if im.mode == "P" and "transparency" in im.info:
                im = im.convert("RGBA")  # PIL warns when a palette with transparency goes straight to RGB
            im = im.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DatasetFormatError(f"Cannot read image {name or source}: {e}. Remove or replace the file.") from e
    if image_size is not None and im.size != (image_size, image_size):
        scale = image_size / min(im.size)
        w, h = max(image_size, round(im.width * scale)), max(image_size, round(im.height * scale))
        im = im.resize((w, h), Image.BICUBIC)
        left, top = (w - image_size) // 2, (h - image_size) // 2
        im = im.crop((left, top, left + image_size, top + image_size))
    return np.array(im)  # writable, so that torch.from_numpy does not warn


def decode_all(sources: Sequence[Union[Path, bytes]], names: Sequence[str], image_size: Optional[int]) -> torch.Tensor:
    """Decode images into one ``uint8 (N, 3, H, W)`` tensor; PIL releases the GIL while decoding, so threads help.

    Raises:
        UnreadableImagesError: after decoding every image, naming all that cannot be read (the first
            :data:`NAMED_AT_MOST` by name, the rest counted).
        MixedImageSizesError: at the first image whose size differs (nothing else is decoded).
    """
    images, bad = decode_replacing(sources, names, image_size)
    if bad:
        raise UnreadableImagesError(bad, len(sources))
    return images


def decode_replacing(sources: Sequence[Union[Path, bytes]], names: Sequence[str],
                     image_size: Optional[int]) -> tuple[torch.Tensor, list[tuple[int, str, str]]]:
    """As :func:`decode_all`, but an unreadable image is replaced by the next readable one (i + 1, i + 2, ... modulo
    the split, the rule of the training loop's streamed files); returns the images and the (index, name, reason) of
    every unreadable one."""
    bad: list[tuple[int, str, str]] = []

    def attempt(i: int) -> Optional[np.ndarray]:
        try:
            return load_rgb(sources[i], image_size, names[i])
        except DatasetFormatError as e:
            reason = str(e.__cause__ if e.__cause__ is not None else e).strip()  # PIL's own words when it has any
            bad.append((i, names[i], reason.splitlines()[0] if reason else type(e.__cause__ or e).__name__))
            return None

    first, start = None, 0
    while first is None and start < len(sources):
        first, start = attempt(start), start + 1
    if first is None:
        raise UnreadableImagesError(bad, len(sources))
    reference = start - 1  # the first readable image sets the split's size
    out = torch.empty((len(sources), 3, *first.shape[:2]), dtype=torch.uint8)
    out[reference] = torch.from_numpy(first).permute(2, 0, 1)

    def decode(i: int) -> None:
        arr = attempt(i)
        if arr is None:
            return
        if arr.shape != first.shape:
            raise MixedImageSizesError(
                f"Images of one split have different sizes: {names[reference]} is {first.shape[1]}x{first.shape[0]}, "
                f"{names[i]} is {arr.shape[1]}x{arr.shape[0]}. Pass image_size=N to decode them all at N x N "
                "(shorter side resized to N, then a centre crop), or use open_dataset(...), which decodes each "
                "image when it is read and lets the model's eval transform resize it."
            )
        out[i] = torch.from_numpy(arr).permute(2, 0, 1)

    pool = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1))
    try:
        for _ in pool.map(decode, range(start, len(sources))):
            pass  # iterating re-raises the first error (a size mismatch)
    finally:
        pool.shutdown(cancel_futures=True)  # after a size mismatch, do not decode the rest of the split
    bad.sort()
    unreadable = {i for i, _, _ in bad}
    for i, _, _ in bad:
        j = next((i + k) % len(sources) for k in range(1, len(sources)) if (i + k) % len(sources) not in unreadable)
        out[i] = out[j]
    return out, bad


def pil_to_uint8(img: Image.Image) -> torch.Tensor:
    """A PIL image as an RGB ``uint8 (3, H, W)`` tensor."""
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1).contiguous()
