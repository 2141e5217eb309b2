"""MoCo v3: an online encoder with projector and predictor, and optionally a momentum encoder for the keys.

With a momentum encoder (MoCo v3, PatchMix ViT-S/B) the keys are proj_m(enc_m(x)), where enc_m/proj_m follow the
online modules by EMA, updated before each forward with the cosine schedule of ``training.schedules.ema_momentum``.
Without one (APS, PatchMix ViT-T) the keys come from the online encoder and projector: APS detaches the projection
of the same pass, PatchMix re-encodes under ``no_grad`` (:meth:`MoCoV3.keys`).
"""

from __future__ import annotations

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from ..errors import MethodConfigError
from .backbone import copy_frozen, feature_dim
from .ema import ema_update
from .heads import MLPHead, MLPSpec
from .tokens import encode_subset


def encode(vit: VisionTransformer, x: Tensor, index: Tensor | None = None) -> Tensor:
    """Pooled (CLS) features of ``vit`` on images ``x``, or on only the patch tokens ``index`` (B, n) (APS)."""
    return vit(x) if index is None else encode_subset(vit, x, index)


class MoCoV3(nn.Module):
    """Online backbone + projector + predictor, and the optional momentum backbone + projector."""

    def __init__(self, backbone: VisionTransformer, projector: MLPSpec, predictor: MLPSpec, *,
                 momentum_encoder: bool) -> None:
        super().__init__()
        if predictor.out != projector.out:
            raise MethodConfigError(f"the predictor must map back to the projection width {projector.out}, "
                             f"got {predictor.out}.")
        self.backbone = backbone
        self.projector = MLPHead(feature_dim(backbone), projector)
        self.predictor = MLPHead(projector.out, predictor)
        self.momentum_backbone = copy_frozen(backbone) if momentum_encoder else None
        self.momentum_projector = copy_frozen(self.projector) if momentum_encoder else None

    @property
    def has_momentum_encoder(self) -> bool:
        return self.momentum_backbone is not None

    def project(self, x: Tensor, index: Tensor | None = None) -> Tensor:
        """z = proj(enc(x)) with gradient."""
        return self.projector(encode(self.backbone, x, index))

    def query(self, x: Tensor, index: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(z, p): the projection and the prediction of the online branch."""
        z = self.project(x, index)
        return z, self.predictor(z)

    @torch.no_grad()
    def keys(self, x: Tensor, index: Tensor | None = None) -> Tensor:
        """Keys without gradient: the momentum branch, or the online encoder and projector."""
        if self.momentum_backbone is None:
            return self.project(x, index)
        return self.momentum_projector(encode(self.momentum_backbone, x, index))

    def ema_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """The (online, momentum) module pairs: encoder and projector (none without a momentum encoder)."""
        if self.momentum_backbone is None:
            return []
        return [(self.backbone, self.momentum_backbone), (self.projector, self.momentum_projector)]

    def update_ema(self, m: float) -> None:
        """theta_k <- m theta_k + (1 - m) theta_q (no-op without a momentum encoder)."""
        ema_update(self.ema_pairs(), m)

    def eval_backbone(self) -> VisionTransformer:
        """The encoder evaluated and published: the momentum encoder when there is one (PatchMix, MoCo v3)."""
        return self.momentum_backbone if self.momentum_backbone is not None else self.backbone
