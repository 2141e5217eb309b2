"""Segmentation data: images with a class index per pixel, in train and val splits.

Every layout ends as a :class:`SegmentationDataset` whose items are ``(uint8 image (3, H, W), uint8 mask (H, W))``,
mask values being class indices ``0 .. C-1`` or :data:`IGNORE_INDEX` (255, never scored). Two kinds:

- :class:`InMemorySegmentation`: all images and masks in two tensors (the CIFAR-10 mosaics);
- :class:`SegmentationFiles`: pairs of image and mask files, decoded when read (the folder layouts, VOC, ADE20K).

The layouts are read by :mod:`sslzoo.data.seg_layouts`, whose ``open_segmentation`` picks one by name or by what
a folder holds. A file's header is checked when the split is opened (every mask single-channel and of its image's size,
so a bad pair is named before any work); the values of a mask are checked when it is decoded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .decode import DatasetFormatError, load_rgb

IGNORE_INDEX = 255
MASK_MODES = ("L", "P")  # 8-bit index maps; VOC's masks are palette (P) PNGs whose indices are the classes


class SegmentationDataset(Dataset):
    """Items ``(uint8 image (3, H, W), uint8 mask (H, W))``; ``classes`` names the mask values, 255 is ignored."""

    classes: list[str]
    fingerprint: str
    name: str

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def mask(self, i: int) -> torch.Tensor:
        """Only the mask of item ``i`` (no image decoded), ``uint8 (H, W)``."""
        return self[i][1]

    def check_values(self, mask: np.ndarray, where: str) -> None:
        bad = np.unique(mask[(mask >= self.num_classes) & (mask != IGNORE_INDEX)])
        if bad.size:
            raise DatasetFormatError(
                f"Mask {where} has values {', '.join(map(str, bad[:5].tolist()))} outside the {self.num_classes}"
                f" classes 0-{self.num_classes - 1} (255 = ignore). Fix the mask, or list every class in classes.txt.")


class InMemorySegmentation(SegmentationDataset):
    """A split held in two tensors: ``images uint8 (N, 3, H, W)``, ``masks uint8 (N, H, W)``."""

    def __init__(self, images: torch.Tensor, masks: torch.Tensor, classes: Sequence[str], fingerprint: str,
                 name: str = "in-memory") -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be uint8 (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        if masks.dtype != torch.uint8 or masks.shape != (images.shape[0], *images.shape[2:]):
            raise ValueError(f"masks must be uint8 (N, H, W) matching the images, got {tuple(masks.shape)}")
        self.images, self.masks = images, masks
        self.classes, self.fingerprint, self.name = list(classes), fingerprint, name
        if len(self.images):
            self.check_values(masks.numpy(), f"of {name}")

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.masks[i]

    def mask(self, i: int) -> torch.Tensor:
        return self.masks[i]


def _read_mask_header(path: Path) -> tuple[str, tuple[int, int]]:
    try:
        with Image.open(path) as im:
            return im.mode, im.size
    except (OSError, SyntaxError, ValueError) as e:
        raise DatasetFormatError(f"Cannot read mask {path}: {e}. Remove or replace the file.") from e


def _image_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, SyntaxError, ValueError) as e:
        raise DatasetFormatError(f"Cannot read image {path}: {e}. Remove or replace the file.") from e


class SegmentationFiles(SegmentationDataset):
    """Pairs of image and mask files, decoded when read.

    Args:
        pairs: ``(image file, mask file)`` per item.
        classes: the class names, in mask-value order (after ``label_map``).
        fingerprint: identifies the split's content (the feature cache is keyed by it).
        label_map: a 256-entry ``uint8`` table applied to the raw mask values (ADE20K's shift), or None.
        check_headers: check every mask's mode and size against its image now (headers only, no decoding).
    """

    def __init__(self, pairs: Sequence[tuple[Path, Path]], classes: Sequence[str], fingerprint: str, name: str,
                 label_map: Optional[np.ndarray] = None, check_headers: bool = True) -> None:
        self.pairs = [(Path(a), Path(b)) for a, b in pairs]
        self.classes, self.fingerprint, self.name = list(classes), fingerprint, name
        self.label_map = label_map
        if check_headers:
            for image, mask in self.pairs:
                self._check_header(image, mask)

    @staticmethod
    def _check_header(image: Path, mask: Path) -> None:
        mode, size = _read_mask_header(mask)
        if mode not in MASK_MODES:
            raise DatasetFormatError(
                f"Mask {mask} is a {mode} image; masks must be single-channel PNG index maps (mode L or P) whose"
                " values are class indices, 255 = ignore. Convert colour masks to class indices first.")
        image_size = _image_size(image)
        if size != image_size:
            raise DatasetFormatError(
                f"Mask {mask} is {size[0]}x{size[1]} but its image {image.name} is {image_size[0]}x{image_size[1]};"
                " a mask must have its image's size.")

    def __len__(self) -> int:
        return len(self.pairs)

    def _mask_array(self, i: int) -> np.ndarray:
        path = self.pairs[i][1]
        with Image.open(path) as im:
            if im.mode not in MASK_MODES:  # a file replaced since the split was opened
                self._check_header(self.pairs[i][0], path)
            mask = np.array(im)
        if self.label_map is not None:
            mask = self.label_map[mask]
        self.check_values(mask, str(path))
        return mask

    def mask(self, i: int) -> torch.Tensor:
        return torch.from_numpy(self._mask_array(i))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = torch.from_numpy(load_rgb(self.pairs[i][0])).permute(2, 0, 1).contiguous()
        mask = self._mask_array(i)
        if tuple(mask.shape) != tuple(image.shape[1:]):
            self._check_header(*self.pairs[i])
        return image, torch.from_numpy(mask)
