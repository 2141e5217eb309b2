"""APS (Asymmetric Patch Sampling, METHODS 1): T optimizer steps per batch on sparse/selective patch subsets.

Both views are cropped once per batch; at step t view 1 keeps the t-th chunk of a random permutation of its patch
grid (sparse) and view 2 a subset that avoids what view 1 shows (selective, ``training.views.aps``); MoCo v3's
symmetric loss on the two subsets, without a momentum encoder in the recipe.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from torch import Tensor

from ..frameworks.mocov3 import MoCoV3
from .base import StepContext
from .mocov3 import MoCoSettings, MoCoV3Method
from ..views.aps import sample_pairs, subset_size
from ..views.crops import ViewGeometry
from ..views.draws import RandomSource
from ..views.pipeline import ViewPipelineConfig
from ..views.presets import aps_cifar


@dataclass
class APSSettings:
    """METHODS 1.2: sampling ratio, optimizer steps per batch (nsampling), power gamma; flip-aware overlap."""

    ratio: float = 0.25
    steps: int = 4
    gamma: float = 3.0
    ignore_flips: bool = False


class APSMethod(MoCoV3Method):
    """APS: T optimizer steps per batch, each on a sparse/selective pair of patch subsets of the same two views."""

    args_type = APSSettings

    def __init__(self, framework: MoCoV3, settings: MoCoSettings, aps: APSSettings) -> None:
        super().__init__(framework, settings)
        self.aps = aps
        self.substeps = aps.steps
        self.grid = framework.backbone.patch_embed.grid_size[0]
        self.n = subset_size(self.grid, aps.ratio)

    def paper_views(self, mean: tuple[float, ...], std: tuple[float, ...]) -> list[ViewPipelineConfig]:
        return [replace(aps_cifar(), size=self.image_size, mean=mean, std=std)] * 2

    def finish_views(self, crops: dict[str, Tensor], geometry: dict[str, ViewGeometry], generator: RandomSource,
                     epoch: int) -> dict[str, Tensor]:
        out = super().finish_views(crops, geometry, generator, epoch)
        s1, s2 = sample_pairs(geometry["x1"], geometry["x2"], self.grid, ratio=self.aps.ratio, steps=self.aps.steps,
                              gamma=self.aps.gamma, generator=generator, ignore_flips=self.aps.ignore_flips)
        return dict(out, s1=s1, s2=s2)

    def forward(self, inputs: dict[str, Tensor], substep: int, ctx: StepContext) -> dict[str, Tensor]:
        return self.symmetric(inputs["x1"], inputs["x2"], inputs["s1"][:, substep], inputs["s2"][:, substep])
