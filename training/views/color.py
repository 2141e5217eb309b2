"""Photometric steps of a view: colour jitter, grayscale, Gaussian blur, solarisation and normalisation.

Batched over float images in [0, 1], (B, 3, H, W), with random numbers from the caller's generator. The laws follow
torchvision:

- :func:`color_jitter` applies brightness, contrast, saturation and hue in a fresh random order per image, like
  ``ColorJitter``; the same factor ranges; the whole jitter is applied with probability ``p`` (``RandomApply``).
- :func:`gaussian_blur` draws sigma ~ U(sigma) per image and uses a reflect-padded separable kernel like
  ``GaussianBlur``. The kernel size is not part of the method specs; the default is the BYOL rule, the odd number
  nearest 10 % of the image side (23 at 224 px, 3 at 32 px), at least 3.
- :func:`solarize` inverts pixels >= 0.5 (PIL's 128 threshold on 8-bit images).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

from .draws import RandomSource, bernoulli, rand_uniform

_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale


def rgb_to_gray(images: Tensor) -> Tensor:
    """(B, 1, H, W) luma with torchvision's weights."""
    w = torch.tensor(_GRAY_WEIGHTS, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return (images * w).sum(dim=1, keepdim=True)


def _blend(images: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    f = factor.to(images).view(-1, 1, 1, 1)
    return (f * images + (1 - f) * other).clamp(0, 1)


def adjust_brightness(images: Tensor, factor: Tensor) -> Tensor:
    """Per-image brightness factor (B,), torchvision's law."""
    return _blend(images, torch.zeros_like(images), factor)


def adjust_contrast(images: Tensor, factor: Tensor) -> Tensor:
    """Per-image contrast factor (B,): blend with the image's mean luma."""
    return _blend(images, rgb_to_gray(images).mean(dim=(1, 2, 3), keepdim=True), factor)


def adjust_saturation(images: Tensor, factor: Tensor) -> Tensor:
    """Per-image saturation factor (B,): blend with the luma image."""
    return _blend(images, rgb_to_gray(images), factor)


def adjust_hue(images: Tensor, shift: Tensor) -> Tensor:
    """Rotate the hue of every image by its ``shift`` (B,) in [-0.5, 0.5] of a turn (HSV, like torchvision)."""
    maxc, _ = images.max(dim=1)
    minc, _ = images.min(dim=1)
    span = maxc - minc
    grey = span == 0
    sat = span / torch.where(grey, torch.ones_like(maxc), maxc)
    safe_span = torch.where(grey, torch.ones_like(span), span)
    r, g, b = ((maxc.unsqueeze(1) - images) / safe_span.unsqueeze(1)).unbind(1)
    red_max = maxc == images[:, 0]
    green_max = (maxc == images[:, 1]) & ~red_max
    blue_max = ~red_max & ~green_max
    hue = (b - g) * red_max + (2.0 + r - b) * green_max + (4.0 + g - r) * blue_max
    hue = torch.fmod(hue / 6.0 + 1.0, 1.0)
    hue = torch.remainder(hue + shift.to(images).view(-1, 1, 1), 1.0)

    h6 = hue * 6
    sector = torch.floor(h6)
    frac = h6 - sector
    sector = sector.long().remainder(6)
    v = maxc
    p = ((1 - sat) * v).clamp(0, 1)
    q = ((1 - sat * frac) * v).clamp(0, 1)
    t = ((1 - sat * (1 - frac)) * v).clamp(0, 1)
    vpqt = torch.stack([v, p, q, t], dim=1)
    # which of (v, p, q, t) each of r, g, b takes in each of the six hue sectors
    pick = torch.tensor([[0, 2, 1, 1, 3, 0], [3, 0, 0, 2, 1, 1], [1, 1, 3, 0, 0, 2]], device=images.device)
    return vpqt.gather(1, pick[:, sector].movedim(0, 1))


def _factor_range(strength: float, *, centre: float) -> tuple[float, float]:
    return (max(0.0, centre - strength), centre + strength)


def color_jitter(
    images: Tensor, *, brightness: float, contrast: float, saturation: float, hue: float, p: float,
    generator: RandomSource,
) -> Tensor:
    """torchvision's ``RandomApply([ColorJitter(brightness, contrast, saturation, hue)], p)`` on every image.

    Each selected image gets its own factors and its own random order of the four adjustments.
    """
    batch, device = images.shape[0], images.device
    apply = bernoulli(batch, p, generator=generator, device=device)
    ops = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)
    ranges = (_factor_range(brightness, centre=1), _factor_range(contrast, centre=1),
              _factor_range(saturation, centre=1), (-hue, hue))
    active = (brightness > 0, contrast > 0, saturation > 0, hue > 0)
    factors = rand_uniform((batch, 4), generator=generator, device=device,
                           low=torch.tensor([r[0] for r in ranges], device=device),
                           high=torch.tensor([r[1] for r in ranges], device=device)).t()
    order = torch.argsort(rand_uniform((batch, 4), generator=generator, device=device), dim=1)
    out = images.clone()
    for stage in range(4):
        for op, fn in enumerate(ops):
            chosen = (apply & (order[:, stage] == op)).nonzero().squeeze(1) if active[op] else None
            if chosen is not None and chosen.numel():
                out[chosen] = fn(out[chosen], factors[op, chosen])
    return out


def grayscale(images: Tensor, *, p: float, generator: RandomSource) -> Tensor:
    """Replace each image by its 3-channel luma image with probability ``p``."""
    apply = bernoulli(images.shape[0], p, generator=generator, device=images.device).view(-1, 1, 1, 1)
    return torch.where(apply, rgb_to_gray(images).expand_as(images), images)


def default_blur_kernel(size: int) -> int:
    """The odd kernel side nearest 10 % of the image side, at least 3."""
    return max(3, int(0.1 * size) // 2 * 2 + 1)


def blur(images: Tensor, sigma: Tensor, kernel_size: int) -> Tensor:
    """Separable Gaussian blur with a per-image ``sigma`` (B,) and reflect padding, like torchvision."""
    batch, channels, height, width = images.shape
    half = (kernel_size - 1) / 2
    x = torch.linspace(-half, half, kernel_size, device=images.device, dtype=images.dtype)
    kernel = torch.exp(-0.5 * (x / sigma.to(images).view(-1, 1)) ** 2)
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(channels, dim=0)
    pad = kernel_size // 2
    flat = F.pad(images.reshape(1, batch * channels, height, width), (pad, pad, pad, pad), mode="reflect")
    flat = F.conv2d(flat, kernel.view(-1, 1, kernel_size, 1), groups=batch * channels)
    flat = F.conv2d(flat, kernel.view(-1, 1, 1, kernel_size), groups=batch * channels)
    return flat.view(batch, channels, height, width)


def gaussian_blur(
    images: Tensor, *, sigma: tuple[float, float] = (0.1, 2.0), p: float, generator: RandomSource,
    kernel_size: int | None = None,
) -> Tensor:
    """Blur each image with probability ``p``, with sigma ~ U(sigma) drawn per image."""
    batch = images.shape[0]
    apply = bernoulli(batch, p, generator=generator, device=images.device)
    sigmas = rand_uniform((batch,), generator=generator, device=images.device, low=sigma[0], high=sigma[1])
    chosen = apply.nonzero().squeeze(1)
    if not chosen.numel():
        return images
    k = default_blur_kernel(min(images.shape[-2:])) if kernel_size is None else kernel_size
    out = images.clone()
    out[chosen] = blur(images[chosen], sigmas[chosen], k)
    return out


def solarize(images: Tensor, *, p: float, generator: RandomSource, threshold: float = 0.5) -> Tensor:
    """Invert the pixels at or above ``threshold`` of each image with probability ``p``."""
    apply = bernoulli(images.shape[0], p, generator=generator, device=images.device).view(-1, 1, 1, 1)
    return torch.where(apply & (images >= threshold), 1 - images, images)


def normalize(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """(x - mean) / std per channel."""
    m = torch.tensor(mean, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
    return (images - m) / s
