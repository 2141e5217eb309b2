"""The baseline two-crop view generator: two independently augmented views of every image."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from training.views.augment import ViewGeometry, ViewPipeline

View = tuple[Tensor, ViewGeometry]


def two_views(images: Tensor, pipeline1: ViewPipeline, pipeline2: ViewPipeline,
              generator: torch.Generator) -> tuple[View, View]:
    """((x1, g1), (x2, g2)): view 1 from ``pipeline1``, then view 2 from ``pipeline2``, both from ``generator``."""
    return pipeline1(images, generator), pipeline2(images, generator)


@dataclass
class TwoViews:
    """:func:`two_views` with its two pipelines bound; call it as ``TwoViews(p1, p2)(images, generator)``."""

    pipeline1: ViewPipeline
    pipeline2: ViewPipeline

    def __call__(self, images: Tensor, generator: torch.Generator) -> tuple[View, View]:
        return two_views(images, self.pipeline1, self.pipeline2, generator)
