"""The geometric part of the views: which crops a method needs (:class:`CropSpec`), their boxes and flips, and the
crops cut from a batch held in memory.

A method's views are made in two stages, so that the geometric stage can run where the image is decoded (a
DataLoader worker, one image of any size at a time) and the photometric stage batched on the training device:

1. :func:`draw_geometry`: for every :class:`CropSpec`, a crop box (RandomResizedCrop's law, or a method's guide such
   as ContrastiveCrop's box bank) and a flip flag per image, as :class:`ViewGeometry`;
2. the crops themselves: :func:`crop_in_memory` for a batch of same-size images on the device,
   ``training.data.stream`` for one decoded image in a worker; both return the crops already flipped;
3. the method's ``finish_views``: colour steps, normalisation and whatever the method derives from the geometry
   (APS's patch subsets).

With per-sample draws (``training.views.sample_draws``) the first stage gives every image the same boxes and flips
in both places.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from torch import Tensor

from .crops import Interpolation, ViewGeometry, crops_per_image, hflip, sample_crop_boxes
from .draws import RandomSource, bernoulli
from .pipeline import ViewPipelineConfig
from .sample_draws import SampleDraws


@dataclass(frozen=True)
class CropSpec:
    """One entry of a method's views: ``count`` crops per image (None: a single crop) of ``size`` pixels."""

    name: str  # the key of the crops in the method's inputs: x1, x2, locals, queries
    size: int
    scale: tuple[float, float]
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    interpolation: Interpolation = "bilinear"
    flip_p: float = 0.5
    count: int | None = None
    guided: bool = False  # the boxes come from the method's guide (ContrastiveCrop) when it gives any

    @classmethod
    def of(cls, name: str, view: ViewPipelineConfig, *, count: int | None = None, guided: bool = False) -> CropSpec:
        """The crop of a view recipe."""
        return cls(name, view.size, tuple(view.scale), tuple(view.ratio), view.interpolation, view.flip_p, count,
                   guided)

    @property
    def per_image(self) -> int:
        return 1 if self.count is None else self.count


class CropGuide(Protocol):
    """Where a method places its guided crops (ContrastiveCrop's box bank); picklable, for DataLoader workers."""

    def boxes(self, indices: Tensor, epoch: int, height: int, width: int,
              generator: RandomSource) -> Tensor | None:
        """Pixel boxes (B, 4) of the images ``indices`` in (0-based) ``epoch``, or None: plain random crops."""


def for_crops(generator: RandomSource, count: int | None) -> RandomSource:
    """The random source of ``count`` crops per image, rows in (image, crop) order."""
    if count is not None and isinstance(generator, SampleDraws):
        return generator.expand(count)
    return generator


def draw_geometry(specs: list[CropSpec], height: int, width: int, generator: RandomSource, *, indices: Tensor,
                  epoch: int, guide: CropGuide | None = None) -> dict[str, ViewGeometry]:
    """Boxes and flips of every spec for the images ``indices`` (all ``height`` x ``width``), spec by spec.

    Returns:
        spec name -> :class:`ViewGeometry` with boxes (B, 4) and flips (B,), or (B, count, 4) and (B, count).
    """
    batch = int(indices.shape[0])
    out = {}
    for spec in specs:
        draws = for_crops(generator, spec.count)
        boxes = None
        if spec.guided and guide is not None and spec.count is None:
            boxes = guide.boxes(indices, epoch, height, width, draws)
        n = batch * spec.per_image
        if boxes is None:
            boxes = sample_crop_boxes(n, height, width, scale=spec.scale, ratio=spec.ratio, generator=draws)
        flipped = bernoulli(n, spec.flip_p, generator=draws, device=boxes.device)
        if spec.count is not None:
            boxes, flipped = boxes.view(batch, spec.count, 4), flipped.view(batch, spec.count)
        out[spec.name] = ViewGeometry(boxes=boxes.float(), flipped=flipped)
    return out


def crop_in_memory(images: Tensor, geometry: dict[str, ViewGeometry], specs: list[CropSpec]) -> dict[str, Tensor]:
    """The flipped crops of float images (B, 3, H, W) in [0, 1]: (B, 3, s, s), or (B, count, 3, s, s)."""
    out = {}
    for spec in specs:
        geom = geometry[spec.name]
        boxes = geom.boxes.to(images.device)
        multi = boxes.dim() == 3
        crops = crops_per_image(images, boxes if multi else boxes.unsqueeze(1), spec.size,
                                interpolation=spec.interpolation)
        flat = hflip(crops.flatten(0, 1), geom.flipped.reshape(-1))
        out[spec.name] = flat.view_as(crops) if multi else flat
    return out

