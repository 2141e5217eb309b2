"""The eval transform of dense data: image and mask resized together to one square size, never cropped apart.

The image is resized to ``size x size`` with the model's interpolation (antialiased, in uint8 as the classification
transform does) and normalised with its mean and std; the mask is resized to the same size by nearest neighbour
(``nearest-exact``: pixel centres map to pixel centres), so every mask pixel keeps a label of the image pixel under
it. Scores are computed against the original masks, at full resolution (see :mod:`sslzoo.eval.seg_metrics`).
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import torch
import torch.nn.functional as F

_INTERPOLATIONS = {"bicubic", "bilinear", "nearest"}


class DenseTransform:
    """Resize images (``uint8 (B, 3, H, W)`` or ``(3, H, W)``) and masks (``(B, H, W)`` or ``(H, W)``) together."""

    def __init__(self, size: int, mean: Sequence[float], std: Sequence[float], interpolation: str = "bicubic") -> None:
        self.size = int(size)
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.interpolation = interpolation if interpolation in _INTERPOLATIONS else "bicubic"
        self._scale = 1.0 / (255.0 * torch.tensor(self.std).view(3, 1, 1))
        self._shift = torch.tensor(self.mean).view(3, 1, 1) * 255.0

    def describe(self) -> str:
        """A stable description, used in cache keys."""
        return json.dumps({"kind": "dense", "size": self.size, "mean": self.mean, "std": self.std,
                           "interpolation": self.interpolation}, sort_keys=True)

    def __repr__(self) -> str:
        return f"DenseTransform({self.describe()})"

    def resize_image(self, img: torch.Tensor) -> torch.Tensor:
        """uint8 in, uint8 out, ``size x size``."""
        from torchvision.transforms.v2 import functional as TF
        from torchvision.transforms import InterpolationMode

        if tuple(img.shape[-2:]) == (self.size, self.size):
            return img
        return TF.resize(img, [self.size, self.size], interpolation=InterpolationMode(self.interpolation),
                         antialias=True)

    def resize_mask(self, mask: torch.Tensor) -> torch.Tensor:
        if tuple(mask.shape[-2:]) == (self.size, self.size):
            return mask
        batched = mask if mask.ndim == 3 else mask[None]
        out = F.interpolate(batched[:, None].float(), size=(self.size, self.size), mode="nearest-exact")
        out = out[:, 0].to(mask.dtype)
        return out if mask.ndim == 3 else out[0]

    def normalize(self, img: torch.Tensor) -> torch.Tensor:
        return (img.float() - self._shift.to(img.device)) * self._scale.to(img.device)

    def __call__(self, img: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.normalize(self.resize_image(img)), self.resize_mask(mask)


def dense_transform(model: Any, size: int) -> DenseTransform:
    """The model's mean, std and interpolation (timm's data config), at ``size x size``."""
    from timm.data import resolve_model_data_config

    cfg = resolve_model_data_config(model)
    return DenseTransform(size, cfg["mean"], cfg["std"], cfg.get("interpolation") or "bicubic")
