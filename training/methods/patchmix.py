"""PatchMix (METHODS 2): patch-wise mixed images and soft targets on top of MoCo v3's contrast.

loss = CE(q(x1), k(x2), I) + 1/2 CE(q(mix x2), k(x1), Y_mix) + 1/2 CE(q(mix x2), k(mix x1), Y_mm), not symmetrised;
the mixing and targets are ``training.views.patchmix``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from torch import Tensor

from .. import distributed
from ..frameworks.mocov3 import MoCoV3
from .base import StepContext
from .mocov3 import MoCoSettings, MoCoV3Method
from ..views.patchmix import mix_targets, patch_mix
from ..views.pipeline import ViewPipelineConfig
from ..views.presets import patchmix_cifar


@dataclass
class PatchMixSettings:
    """METHODS 2.2: mix number m, label smoothing."""

    m: int = 2
    smoothing: float = 0.0


class PatchMixMethod(MoCoV3Method):
    """PatchMix's three contrasts (not symmetrised), soft targets for the mixed queries."""

    args_type = PatchMixSettings

    def __init__(self, framework: MoCoV3, settings: MoCoSettings, mix: PatchMixSettings) -> None:
        super().__init__(framework, settings)
        self.mix = mix
        self.patch = framework.backbone.patch_embed.patch_size[0]

    def paper_views(self, mean: tuple[float, ...], std: tuple[float, ...]) -> list[ViewPipelineConfig]:
        # PatchMix's CIFAR views use ImageNet statistics (METHODS 2.3), whatever views.mean_std says
        return [replace(patchmix_cifar(v), size=self.image_size) for v in (1, 2)]

    def forward(self, inputs: dict[str, Tensor], substep: int, ctx: StepContext) -> dict[str, Tensor]:
        fw = self.framework
        x1, x2 = inputs["x1"], inputs["x2"]
        mixed1, _ = patch_mix(x1, self.mix.m, self.patch, ctx.generator)  # within the local batch, as the paper
        mixed2, _ = patch_mix(x2, self.mix.m, self.patch, ctx.generator)
        _, q1 = fw.query(x1)
        _, q_mix = fw.query(mixed2)
        k1, k2, k_mix = fw.keys(x1), fw.keys(x2), fw.keys(mixed1)
        y_mix, y_mm = mix_targets(x1.shape[0], self.mix.m, rank=distributed.rank(),
                                  world_size=distributed.world_size(), smoothing=self.mix.smoothing, device=x1.device)
        orig = self.contrast(q1, k2)
        to_orig = self.contrast(q_mix, k1, y_mix)
        to_mix = self.contrast(q_mix, k_mix, y_mm)
        loss = orig + 0.5 * to_orig + 0.5 * to_mix
        return {"loss": loss, "orig": orig.detach(), "mix_orig": to_orig.detach(), "mix_mix": to_mix.detach()}
