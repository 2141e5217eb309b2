"""ADCLR's query crops (METHODS 4.1; the paper's method, not the released code's PQCL variant).

Query crops are cut from each image, with no flip, as in the released code, and the colour steps of
``training.views.presets.dino_query``: the ADCLR method's ``queries`` crop spec (cut with the other crops, in a
worker when streaming). The passes of the ViT over them (the student's joint sequence under the one-way mask, the
teacher's standalone targets) are ``training.frameworks.adclr``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .crops import Interpolation
from .draws import RandomSource
from .geometry import CropSpec, crop_in_memory, draw_geometry


def query_crops(images: Tensor, *, num_queries: int, size: int, scale: tuple[float, float] = (0.05, 0.25),
                generator: RandomSource, interpolation: Interpolation = "bicubic") -> tuple[Tensor, Tensor]:
    """``num_queries`` unflipped RandomResizedCrop query crops of every image (what the ADCLR method cuts).

    Args:
        images: (B, 3, H, W) float in [0, 1].
        num_queries: query crops per image.
        size: side of each crop in pixels (a multiple of the ViT's patch size).
        scale: area fraction range of the crops.
        generator: a ``torch.Generator`` (or per-sample draws).

    Returns:
        (crops (B, nq, 3, size, size), boxes (B, nq, 4) as (top, left, height, width) in source pixels). Colour
        steps, if wanted, come after: ``ViewPipeline(presets.dino_query(size)).photometric``.

    >>> import torch
    >>> from sslzoo.training.views.adclr_queries import query_crops
    >>> images = torch.rand(2, 3, 64, 64)
    >>> crops, boxes = query_crops(images, num_queries=3, size=16, generator=torch.Generator().manual_seed(0))
    >>> crops.shape, boxes.shape
    (torch.Size([2, 3, 3, 16, 16]), torch.Size([2, 3, 4]))
    >>> area = boxes[..., 2] * boxes[..., 3] / 64**2
    >>> bool(((area > 0.04) & (area < 0.27)).all())
    True
    """
    spec = CropSpec("queries", size, tuple(scale), interpolation=interpolation, flip_p=0.0, count=num_queries)
    indices = torch.arange(images.shape[0], device=images.device)
    geometry = draw_geometry([spec], images.shape[-2], images.shape[-1], generator, indices=indices, epoch=0)
    return crop_in_memory(images, geometry, [spec])["queries"], geometry["queries"].boxes
