"""Fabricated segmentation data and an oracle feature extractor, shared by the dense tests.

Pixels of class c have the grey value ``COLOUR_STEP * (c + 1)``, so the oracle can read every pixel's class from the
image: its patch feature is the one-hot of the majority class under the patch, a feature that encodes its label.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

COLOUR_STEP = 40
PATCH = 8


def colour_image(mask: np.ndarray) -> np.ndarray:
    """``uint8 (H, W, 3)`` grey image whose pixel value encodes the class of the mask (255 -> 0)."""
    grey = np.where(mask == 255, 0, (mask.astype(np.int64) + 1) * COLOUR_STEP).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def stripes(width: int, height: int, cuts: Sequence[int], classes: Sequence[int]) -> np.ndarray:
    """A mask of vertical stripes: class ``classes[i]`` from ``cuts[i]`` to ``cuts[i + 1]`` (0 and width implied)."""
    edges = [0, *cuts, width]
    mask = np.zeros((height, width), dtype=np.uint8)
    for c, (a, b) in zip(classes, zip(edges[:-1], edges[1:])):
        mask[:, a:b] = c
    return mask


def quadrants(size: int, classes: Sequence[int]) -> np.ndarray:
    """A ``size x size`` mask of 2x2 tiles, classes in reading order."""
    half = size // 2
    mask = np.empty((size, size), dtype=np.uint8)
    for i, c in enumerate(classes):
        r, col = divmod(i, 2)
        mask[r * half : (r + 1) * half, col * half : (col + 1) * half] = c
    return mask


def write_layout(root: Path, splits: dict[str, Iterable[np.ndarray]], classes: Optional[Sequence[str]] = None,
                 nested: bool = False) -> Path:
    """The generic layout: ``images/SPLIT/i.png`` + ``masks/SPLIT/i.png`` (``SPLIT/images`` ... when nested)."""
    for split, masks in splits.items():
        images = root / split / "images" if nested else root / "images" / split
        mask_dir = root / split / "masks" if nested else root / "masks" / split
        images.mkdir(parents=True, exist_ok=True)
        mask_dir.mkdir(parents=True, exist_ok=True)
        for i, mask in enumerate(masks):
            Image.fromarray(colour_image(mask)).save(images / f"{i:03d}.png")
            Image.fromarray(mask, mode="L").save(mask_dir / f"{i:03d}.png")
    if classes is not None:
        (root / "classes.txt").write_text("\n".join(classes) + "\n")
    return root


class OracleExtractor(torch.nn.Module):
    """Patch features that encode their label: the one-hot of the majority class of the pixels under each patch."""

    def __init__(self, num_classes: int, size: int = 32) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.register_buffer("classes", torch.tensor(num_classes))  # part of the weights' hash
        self.patch_embed = torch.nn.Module()
        self.patch_embed.patch_size = (PATCH, PATCH)
        self.patch_embed.img_size = (size, size)
        self.pretrained_cfg = dict(input_size=(3, size, size), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                                   interpolation="bilinear", crop_pct=1.0)

    def forward_intermediates(self, x: torch.Tensor, indices: int = 1, output_fmt: str = "NCHW",
                              **_) -> list[torch.Tensor]:
        label = (x[:, 0] * 255 / COLOUR_STEP).round().long() - 1
        onehot = F.one_hot(label.clamp(0, self.num_classes - 1), self.num_classes).permute(0, 3, 1, 2).float()
        share = F.avg_pool2d(onehot, PATCH)
        grid = F.one_hot(share.argmax(1), self.num_classes).float()  # (B, h, w, C)
        return [grid.flatten(1, 2) if output_fmt == "NLC" else grid.permute(0, 3, 1, 2)] * indices


def expected_stripe_scores(width: int, patch: int, cut: int) -> tuple[float, float]:
    """mIoU and pixel accuracy (%) of two stripes split at ``cut`` predicted at patch resolution by majority, with
    the boundary moved to the nearest patch edge (what bilinear upsampling of one-hot patch scores gives)."""
    lo, hi = cut - cut % patch, cut - cut % patch + patch
    predicted = lo if cut - lo < hi - cut else hi  # the majority of the mixed patch wins it
    left_t, right_t = cut, width - cut
    left_p = predicted
    tp_left = min(left_t, left_p)
    tp_right = width - max(left_t, left_p)
    iou_left = tp_left / (left_t + left_p - tp_left)
    iou_right = tp_right / (right_t + (width - left_p) - tp_right)
    return 100 * (iou_left + iou_right) / 2, 100 * (tp_left + tp_right) / width
