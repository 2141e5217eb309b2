"""MoCo v3: the symmetric InfoNCE of two crops against all-gathered momentum keys; the base of APS and PatchMix.

loss = 2 tau [CE(q1, k2) + CE(q2, k1)] (``framework.loss_scale``), keys from the momentum encoder when there is one
(``framework.momentum``), else from the online encoder and projector.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from torch import Tensor

from .. import distributed
from ..frameworks.heads import MLPSpec
from ..frameworks.mocov3 import MoCoV3
from .base import Method, StepContext, backbone_from_config, parse_settings
from ..objectives.infonce import hard_targets, info_nce
from ..views.pipeline import ViewPipelineConfig
from ..views.presets import mocov3_cifar


@dataclass
class MoCoSettings:
    """MoCo v3 framework: momentum m0 (None: no momentum encoder), tau, loss scale ('2tau' or a number), heads."""

    momentum: float | None = 0.99
    temperature: float = 0.2
    loss_scale: float | str = "2tau"
    projector: dict = field(default_factory=lambda: dict(hidden=4096, out=256, layers=3, last_bn=True))
    predictor: dict = field(default_factory=lambda: dict(hidden=4096, out=256, layers=2, last_bn=False))

    @property
    def scale(self) -> float:
        return 2 * self.temperature if self.loss_scale == "2tau" else float(self.loss_scale)


class MoCoV3Method(Method):
    """Symmetric MoCo v3 over two crops."""

    framework_name = "mocov3"
    settings_type = MoCoSettings
    settings: MoCoSettings
    framework: MoCoV3

    @classmethod
    def build_framework(cls, cfg: dict[str, Any], settings: MoCoSettings) -> MoCoV3:
        backbone = backbone_from_config(cfg)
        return MoCoV3(backbone, parse_settings(MLPSpec, settings.projector, "framework.projector"),
                      parse_settings(MLPSpec, settings.predictor, "framework.predictor"),
                      momentum_encoder=settings.momentum is not None)

    def paper_views(self, mean: tuple[float, ...], std: tuple[float, ...]) -> list[ViewPipelineConfig]:
        return [replace(mocov3_cifar(), size=self.image_size, mean=mean, std=std)] * 2

    def ema_base(self) -> float | None:
        return self.settings.momentum

    def contrast(self, queries: Tensor, keys: Tensor, targets: Tensor | None = None) -> Tensor:
        """InfoNCE of local queries against the keys of every rank (hard diagonal targets by default)."""
        keys = distributed.all_gather_nograd(keys.detach().contiguous())
        if targets is None:
            targets = hard_targets(queries.shape[0], distributed.rank(), device=queries.device)
        return info_nce(queries, keys, targets, temperature=self.settings.temperature, scale=self.settings.scale)

    def symmetric(self, x1: Tensor, x2: Tensor, index1: Tensor | None = None,
                  index2: Tensor | None = None) -> dict[str, Tensor]:
        fw = self.framework
        z1, p1 = fw.query(x1, index1)
        z2, p2 = fw.query(x2, index2)
        if fw.has_momentum_encoder:
            z1, z2 = fw.keys(x1, index1), fw.keys(x2, index2)
        loss = self.contrast(p1, z2) + self.contrast(p2, z1)
        return {"loss": loss}

    def forward(self, inputs: dict[str, Tensor], substep: int, ctx: StepContext) -> dict[str, Tensor]:
        return self.symmetric(inputs["x1"], inputs["x2"])
