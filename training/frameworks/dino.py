"""DINO: a student (backbone + DINO head) trained to match an EMA teacher's centred, sharpened outputs.

The teacher follows the student after every optimizer step with the cosine momentum schedule (0.996 -> 1). The
objective (centering, temperatures, multi-crop pairs) is in ``training.objectives.dino``.
"""

from __future__ import annotations

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from .backbone import copy_frozen, feature_dim
from .ema import ema_update
from .heads import DINOHead, DINOHeadSpec


class DINO(nn.Module):
    """Student backbone + head, teacher copies without gradient."""

    def __init__(self, backbone: VisionTransformer, head: DINOHeadSpec) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = DINOHead(feature_dim(backbone), head)
        self.teacher_backbone = copy_frozen(backbone)
        self.teacher_head = copy_frozen(self.head)

    def student(self, x: Tensor) -> Tensor:
        """Student logits of a batch of crops (all of one size)."""
        return self.head(self.backbone(x))

    @torch.no_grad()
    def teacher(self, x: Tensor) -> Tensor:
        """Teacher logits, without gradient."""
        return self.teacher_head(self.teacher_backbone(x))

    def ema_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """The (student, teacher) module pairs: backbone and head."""
        return [(self.backbone, self.teacher_backbone), (self.head, self.teacher_head)]

    def update_ema(self, m: float) -> None:
        """theta_t <- m theta_t + (1 - m) theta_s."""
        ema_update(self.ema_pairs(), m)

    def cancel_last_layer_grads(self) -> None:
        """Freeze the prototypes during the first epoch(s) (DINO's ``freeze_last_layer``)."""
        for p in self.head.last_layer.parameters():
            p.grad = None

    def eval_backbone(self) -> VisionTransformer:
        """The teacher: DINO evaluates and publishes it."""
        return self.teacher_backbone
