"""Batched image augmentations driven by an explicit ``torch.Generator``.

Every function works on a whole batch of float images in [0, 1], shape (B, 3, H, W), on CPU or GPU; random numbers
are drawn from the caller's generator (on the generator's device, then moved), so a fixed seed reproduces a view
exactly. Each view comes back with its :class:`ViewGeometry` (crop box in source pixels and flip flag) so that the
methods can relate two views of one image (APS, ContrastiveCrop).

The laws follow torchvision:

- :func:`sample_crop_boxes` is ``RandomResizedCrop.get_params`` (10 tries, then the centre-crop fallback),
  vectorised over the batch.
- :func:`resized_crops` equals ``resized_crop(..., antialias=False)`` applied one image at a time (bilinear or
  bicubic, ``align_corners=False``, borders clamped to the crop), written as two interpolation matrices per crop;
  bicubic results are clamped to [0, 1] like PIL's 8-bit output.
- :func:`color_jitter` applies brightness, contrast, saturation and hue in a fresh random order per image, like
  ``ColorJitter``; the same factor ranges; the whole jitter is applied with probability ``p`` (``RandomApply``).
- :func:`gaussian_blur` draws sigma ~ U(sigma) per image and uses a reflect-padded separable kernel like
  ``GaussianBlur``. The kernel size is not part of the method specs; the default is the BYOL rule, the odd number
  nearest 10 % of the image side (23 at 224 px, 3 at 32 px), at least 3.
- :func:`solarize` inverts pixels >= 0.5 (PIL's 128 threshold on 8-bit images).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from torch import Tensor
from torch.nn import functional as F

from sslzoo.errors import SslzooError

Interpolation = Literal["bilinear", "bicubic"]

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)  # the constants of the APS, PatchMix and ContrastiveCrop CIFAR code
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale
_CUBIC_A = -0.75  # PyTorch's bicubic kernel


class ViewConfigError(SslzooError, ValueError):
    """A view-generation setting that cannot work (say, an empty crop scale or a grid the image does not divide)."""


@dataclass
class ViewGeometry:
    """Where a view came from: its crop box in source pixels and whether it was mirrored afterwards.

    Attributes:
        boxes: float (B, 4) as (top, left, height, width) in source-image pixels.
        flipped: bool (B,); a flipped view's column c shows the source content of column ``width - 1 - c``.
    """

    boxes: Tensor
    flipped: Tensor


def rand_uniform(
    shape: Sequence[int], *, generator: torch.Generator, device: torch.device | str | None = None,
    low: float | Tensor = 0.0, high: float | Tensor = 1.0,
) -> Tensor:
    """U(low, high) samples of ``shape`` drawn from ``generator`` (on its own device), returned on ``device``."""
    u = torch.rand(tuple(shape), generator=generator, device=generator.device)
    u = u.to(device) if device is not None else u
    return low + (high - low) * u


def bernoulli(batch: int, p: float, *, generator: torch.Generator, device: torch.device | str | None = None) -> Tensor:
    """A bool (batch,) mask, True with probability ``p``."""
    return rand_uniform((batch,), generator=generator, device=device) < p


def sample_crop_boxes(
    batch: int, height: int, width: int, *, scale: tuple[float, float], ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator, device: torch.device | str | None = None, tries: int = 10,
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
    generator: torch.Generator,
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
    factors = rand_uniform((4, batch), generator=generator, device=device,
                           low=torch.tensor([r[0] for r in ranges], device=device).view(4, 1),
                           high=torch.tensor([r[1] for r in ranges], device=device).view(4, 1))
    order = torch.argsort(rand_uniform((batch, 4), generator=generator, device=device), dim=1)
    out = images.clone()
    for stage in range(4):
        for op, fn in enumerate(ops):
            chosen = (apply & (order[:, stage] == op)).nonzero().squeeze(1) if active[op] else None
            if chosen is not None and chosen.numel():
                out[chosen] = fn(out[chosen], factors[op, chosen])
    return out


def grayscale(images: Tensor, *, p: float, generator: torch.Generator) -> Tensor:
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
    images: Tensor, *, sigma: tuple[float, float] = (0.1, 2.0), p: float, generator: torch.Generator,
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


def solarize(images: Tensor, *, p: float, generator: torch.Generator, threshold: float = 0.5) -> Tensor:
    """Invert the pixels at or above ``threshold`` of each image with probability ``p``."""
    apply = bernoulli(images.shape[0], p, generator=generator, device=images.device).view(-1, 1, 1, 1)
    return torch.where(apply & (images >= threshold), 1 - images, images)


def normalize(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """(x - mean) / std per channel."""
    m = torch.tensor(mean, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
    return (images - m) / s


@dataclass
class ViewPipelineConfig:
    """One view's augmentation recipe: crop, flip, colour jitter, grayscale, blur, solarize, normalise."""

    size: int
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    interpolation: Interpolation = "bilinear"
    flip_p: float = 0.5
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)  # brightness, contrast, saturation, hue
    jitter_p: float = 0.8
    gray_p: float = 0.2
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel: int | None = None  # None: default_blur_kernel(size)
    solarize_p: float = 0.0
    mean: tuple[float, float, float] = field(default=CIFAR_MEAN)
    std: tuple[float, float, float] = field(default=CIFAR_STD)


class ViewPipeline:
    """Turns a batch of source images into one augmented, normalised view per image, plus its geometry."""

    def __init__(self, cfg: ViewPipelineConfig) -> None:
        self.cfg = cfg

    def __call__(
        self, images: Tensor, generator: torch.Generator, *, boxes: Tensor | None = None,
    ) -> tuple[Tensor, ViewGeometry]:
        """Crop (sampled, or ``boxes`` (B, 4) when given, e.g. from ContrastiveCrop), then :meth:`augment`."""
        batch, _, height, width = images.shape
        if boxes is None:
            boxes = sample_crop_boxes(batch, height, width, scale=self.cfg.scale, ratio=self.cfg.ratio,
                                      generator=generator, device=images.device)
        crops = resized_crops(images, boxes, self.cfg.size, interpolation=self.cfg.interpolation)
        views, flipped = self.augment(crops, generator)
        return views, ViewGeometry(boxes=boxes.to(images.device).float(), flipped=flipped)

    def augment(self, crops: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Everything after the crop: returns the normalised views and the bool (B,) flip flags."""
        cfg = self.cfg
        flipped = bernoulli(crops.shape[0], cfg.flip_p, generator=generator, device=crops.device)
        x = hflip(crops, flipped)
        if cfg.jitter_p > 0:
            b, c, s, h = cfg.jitter
            x = color_jitter(x, brightness=b, contrast=c, saturation=s, hue=h, p=cfg.jitter_p, generator=generator)
        if cfg.gray_p > 0:
            x = grayscale(x, p=cfg.gray_p, generator=generator)
        if cfg.blur_p > 0:
            kernel = cfg.blur_kernel or default_blur_kernel(cfg.size)
            x = gaussian_blur(x, sigma=cfg.blur_sigma, p=cfg.blur_p, generator=generator, kernel_size=kernel)
        if cfg.solarize_p > 0:
            x = solarize(x, p=cfg.solarize_p, generator=generator)
        return normalize(x, cfg.mean, cfg.std), flipped


def aps_cifar() -> ViewPipelineConfig:
    """APS on CIFAR (METHODS 1.2 step 1); both views use it."""
    return ViewPipelineConfig(size=32, scale=(0.15, 1.0), interpolation="bilinear", jitter=(0.4, 0.4, 0.4, 0.1))


def patchmix_cifar(view: int) -> ViewPipelineConfig:
    """PatchMix's asymmetric BYOL-style CIFAR views (METHODS 2.3): view 1 always blurred, view 2 may solarize."""
    if view not in (1, 2):
        raise ViewConfigError(f"PatchMix has views 1 and 2, got view={view}.")
    return ViewPipelineConfig(
        size=32, scale=(0.1, 1.0), interpolation="bicubic", jitter=(0.4, 0.4, 0.2, 0.1),
        blur_p=1.0 if view == 1 else 0.1, solarize_p=0.0 if view == 1 else 0.2,
        mean=IMAGENET_MEAN, std=IMAGENET_STD,
    )


def mocov3_cifar() -> ViewPipelineConfig:
    """The MoCo v3 baseline on 32-px CIFAR, both views: the ContrastiveCrop repository's CIFAR recipe with plain crops.

    RandomResizedCrop scale (0.2, 1), flip, ColorJitter(0.4, 0.4, 0.4, 0.1) p 0.8, grayscale 0.2, no blur (a blur
    wipes out a 32-px image), CIFAR normalisation. Sharing it with :func:`ccrop_cifar` means a ContrastiveCrop run
    differs from its baseline only in where the crops are placed.
    """
    return ViewPipelineConfig(size=32, scale=(0.2, 1.0), jitter=(0.4, 0.4, 0.4, 0.1))


def ccrop_cifar() -> ViewPipelineConfig:
    """ContrastiveCrop's CIFAR views (METHODS 3.3); its boxes come from ``contrastive_crop``, passed as ``boxes=``."""
    return mocov3_cifar()


# Views a recipe can name as ``views.base`` to give every method the same two main views (the zoo, issue 5).
BASE_VIEWS: dict[str, Callable[[], ViewPipelineConfig]] = {"mocov3_cifar": mocov3_cifar, "aps_cifar": aps_cifar}


def dino_global(size: int = 224, *, view: int = 1, scale: tuple[float, float] = (0.25, 1.0),
                mean: tuple[float, float, float] = IMAGENET_MEAN,
                std: tuple[float, float, float] = IMAGENET_STD) -> ViewPipelineConfig:
    """DINO's global crops: view 1 blurred (p 1), view 2 blurred (p 0.1) and solarised (p 0.2).

    The scale (0.25, 1) is the one the ADCLR/PQCL run script uses (METHODS 4.2).
    """
    if view not in (1, 2):
        raise ViewConfigError(f"DINO has global views 1 and 2, got view={view}.")
    return ViewPipelineConfig(
        size=size, scale=scale, interpolation="bicubic", jitter=(0.4, 0.4, 0.2, 0.1),
        blur_p=1.0 if view == 1 else 0.1, solarize_p=0.0 if view == 1 else 0.2, mean=mean, std=std,
    )


def dino_query(size: int = 96, *, mean: tuple[float, float, float] = IMAGENET_MEAN,
               std: tuple[float, float, float] = IMAGENET_STD) -> ViewPipelineConfig:
    """ADCLR's query crops after cropping (METHODS 4.2): jitter, grayscale, blur p 0.5, no flip, no solarize."""
    return replace(dino_global(size, mean=mean, std=std), scale=(0.05, 0.25), flip_p=0.0, blur_p=0.5)
