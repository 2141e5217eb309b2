"""Crop geometry: RandomResizedCrop boxes, resized crops of float image tensors, flips and :class:`ViewGeometry`.

Every function works on a whole batch of float images in [0, 1], shape (B, 3, H, W), on CPU or GPU, with random
numbers from the caller's generator or per-sample draws (:mod:`training.views.draws`). The laws follow torchvision:

- :func:`sample_crop_boxes` is ``RandomResizedCrop.get_params`` (10 tries, then the centre-crop fallback),
  vectorised over the batch.
- :func:`resized_crops` equals ``resized_crop(..., antialias=False)`` applied one image at a time (bilinear or
  bicubic, ``align_corners=False``, borders clamped to the crop), written as two interpolation matrices per crop;
  bicubic results are clamped to [0, 1] like PIL's 8-bit output.

Each view keeps its :class:`ViewGeometry` (crop box in source pixels and flip flag) so that the methods can relate
two views of one image (APS, ContrastiveCrop).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..errors import ViewConfigError
from .draws import RandomSource, rand_uniform

Interpolation = Literal["bilinear", "bicubic"]

_CUBIC_A = -0.75  # PyTorch's bicubic kernel


@dataclass
class ViewGeometry:
    """Where a view came from: its crop box in source pixels and whether it was mirrored afterwards.

    Attributes:
        boxes: float (B, 4) as (top, left, height, width) in source-image pixels.
        flipped: bool (B,); a flipped view's column c shows the source content of column ``width - 1 - c``.
    """

    boxes: Tensor
    flipped: Tensor


def sample_crop_boxes(
    batch: int, height: int, width: int, *, scale: tuple[float, float], ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: RandomSource, device: torch.device | str | None = None, tries: int = 10,
) -> Tensor:
    """RandomResizedCrop boxes for ``batch`` images of ``height`` x ``width`` pixels.

    Returns:
        float (batch, 4) as (top, left, height, width), integer-valued, on ``device`` (default: the generator's).
    """
    if not 0 < scale[0] <= scale[1] or not 0 < ratio[0] <= ratio[1]:
        raise ViewConfigError(f"crop scale {scale} and ratio {ratio} must be increasing pairs of positive numbers.")
    device = generator.device if device is None else device
    area = height * width
    target = area * rand_uniform((batch, tries), generator=generator, low=scale[0], high=scale[1])
    log_r = rand_uniform((batch, tries), generator=generator, low=math.log(ratio[0]), high=math.log(ratio[1]))
    aspect = torch.exp(log_r)
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = torch.argmax(ok.to(torch.uint8), dim=1, keepdim=True)  # first successful try, 0 when none
    h = h.gather(1, first).squeeze(1)
    w = w.gather(1, first).squeeze(1)
    pos = rand_uniform((batch, 2), generator=generator)
    top = torch.floor(pos[:, 0] * (height - h + 1))
    left = torch.floor(pos[:, 1] * (width - w + 1))

    fh, fw = _centre_fallback(height, width, ratio)
    found = ok.any(dim=1)
    h = torch.where(found, h, torch.full_like(h, fh))
    w = torch.where(found, w, torch.full_like(w, fw))
    top = torch.where(found, top, torch.full_like(top, (height - fh) // 2))
    left = torch.where(found, left, torch.full_like(left, (width - fw) // 2))
    return torch.stack([top, left, h, w], dim=1).to(device)


def _centre_fallback(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int]:
    in_ratio = width / height
    if in_ratio < ratio[0]:
        return int(round(width / ratio[0])), width
    if in_ratio > ratio[1]:
        return height, int(round(height * ratio[1]))
    return height, width


def _cubic_weights(t: Tensor) -> Tensor:
    """PyTorch's 4-tap bicubic weights for fractional offsets ``t`` (any shape) -> (..., 4)."""
    a = _CUBIC_A

    def near(x: Tensor) -> Tensor:
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x: Tensor) -> Tensor:
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return torch.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], dim=-1)


def _interpolation_matrix(start: Tensor, length: Tensor, in_size: int, out_size: int, mode: Interpolation) -> Tensor:
    """(..., out_size, in_size) weights that resample source pixels [start, start + length) to ``out_size``.

    Same source positions, taps and border clamping as ``F.interpolate(align_corners=False, antialias=False)`` on
    the cropped image.
    """
    start, length = start.long(), length.long()
    scale = (length.float() / out_size).unsqueeze(-1)
    dst = torch.arange(out_size, device=start.device, dtype=torch.float32)
    src = scale * (dst + 0.5) - 0.5
    last = (length - 1).unsqueeze(-1).unsqueeze(-1)
    if mode == "bilinear":
        src = src.clamp_min(0)
        i0 = torch.minimum(src.floor().long(), last.squeeze(-1))
        frac = (src - i0).clamp(0, 1)
        taps = torch.stack([i0, i0 + 1], dim=-1)
        weights = torch.stack([1 - frac, frac], dim=-1)
    elif mode == "bicubic":
        i0 = src.floor()
        weights = _cubic_weights(src - i0)
        taps = i0.long().unsqueeze(-1) + torch.arange(-1, 3, device=start.device)
    else:
        raise ViewConfigError(f"interpolation must be 'bilinear' or 'bicubic', got {mode!r}.")
    taps = torch.minimum(taps.clamp_min(0), last) + start.unsqueeze(-1).unsqueeze(-1)
    matrix = torch.zeros(*taps.shape[:-1], in_size, device=start.device, dtype=torch.float32)
    return matrix.scatter_add_(-1, taps, weights)


def crops_per_image(images: Tensor, boxes: Tensor, size: int, *, interpolation: Interpolation = "bilinear") -> Tensor:
    """K resized crops of every image: ``boxes`` (B, K, 4) -> (B, K, C, size, size), no copy of the images."""
    _, _, height, width = images.shape
    box = boxes.round().to(images.device)
    rows = _interpolation_matrix(box[..., 0], box[..., 2], height, size, interpolation).to(images.dtype)
    cols = _interpolation_matrix(box[..., 1], box[..., 3], width, size, interpolation).to(images.dtype)
    tall = torch.einsum("bkih,bchw->bkciw", rows, images)
    crops = torch.einsum("bkciw,bkjw->bkcij", tall, cols)
    # Bicubic taps overshoot [0, 1]; the papers' PIL pipelines round back to 8-bit, and the HSV maths of the colour
    # jitter divides by the per-pixel maximum, which turns a negative overshoot into inf/NaN.
    return crops.clamp_(0, 1) if interpolation == "bicubic" else crops


def resized_crops(images: Tensor, boxes: Tensor, size: int, *, interpolation: Interpolation = "bilinear") -> Tensor:
    """Crop every image to its pixel box (top, left, height, width) and resize it to ``size`` x ``size``.

    Args:
        images: (B, C, H, W) float.
        boxes: (B, 4) integer-valued (top, left, height, width) inside the image (the samplers' output).
        size: output side.
        interpolation: ``bilinear`` or ``bicubic`` (bicubic output is clamped to [0, 1], as PIL's 8-bit result is).
    """
    return crops_per_image(images, boxes.unsqueeze(1), size, interpolation=interpolation).squeeze(1)


def hflip(images: Tensor, flipped: Tensor) -> Tensor:
    """Mirror the images whose ``flipped`` flag is True."""
    return torch.where(flipped.to(images.device).view(-1, 1, 1, 1), images.flip(-1), images)
