"""One view of every image of a batch: crop, flip, colour steps, normalisation, as a :class:`ViewPipelineConfig` says.

The steps draw their random numbers from the caller's generator in a fixed order (crop box, flip, jitter,
grayscale, blur, solarisation), so one seed reproduces a view exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from sslzoo.preprocessing import CIFAR10_MEAN, CIFAR10_STD_APS
from .color import color_jitter, default_blur_kernel, gaussian_blur, grayscale, normalize, solarize
from .crops import Interpolation, ViewGeometry, hflip, resized_crops, sample_crop_boxes
from .draws import RandomSource, bernoulli


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
    # the statistics the APS, PatchMix and ContrastiveCrop CIFAR code normalises with (sslzoo.preprocessing)
    mean: tuple[float, float, float] = field(default=CIFAR10_MEAN)
    std: tuple[float, float, float] = field(default=CIFAR10_STD_APS)


class ViewPipeline:
    """Turns a batch of source images into one augmented, normalised view per image, plus its geometry."""

    def __init__(self, cfg: ViewPipelineConfig) -> None:
        self.cfg = cfg

    def __call__(
        self, images: Tensor, generator: RandomSource, *, boxes: Tensor | None = None,
    ) -> tuple[Tensor, ViewGeometry]:
        """Crop (sampled, or ``boxes`` (B, 4) when given, e.g. from ContrastiveCrop), then :meth:`augment`."""
        batch, _, height, width = images.shape
        if boxes is None:
            boxes = sample_crop_boxes(batch, height, width, scale=self.cfg.scale, ratio=self.cfg.ratio,
                                      generator=generator, device=images.device)
        crops = resized_crops(images, boxes, self.cfg.size, interpolation=self.cfg.interpolation)
        views, flipped = self.augment(crops, generator)
        return views, ViewGeometry(boxes=boxes.to(images.device).float(), flipped=flipped)

    def augment(self, crops: Tensor, generator: RandomSource) -> tuple[Tensor, Tensor]:
        """Everything after the crop: returns the normalised views and the bool (B,) flip flags."""
        flipped = bernoulli(crops.shape[0], self.cfg.flip_p, generator=generator, device=crops.device)
        return self.photometric(hflip(crops, flipped), generator), flipped

    def photometric(self, x: Tensor, generator: RandomSource) -> Tensor:
        """The colour steps and the normalisation of cropped (and flipped) views in [0, 1]."""
        cfg = self.cfg
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
        return normalize(x, cfg.mean, cfg.std)
