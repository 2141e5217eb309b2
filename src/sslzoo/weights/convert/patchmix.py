"""The PatchMix release (``visresearch/PatchMix``): MoCo-v3-style training checkpoints (METHODS.md 2.9).

``{"state_dict": ...}`` (plus ``epoch``, ``arch``, ``optimizer``, ``scaler`` in periodic saves) holding
``base_encoder.*`` and, for ViT-S/B, ``momentum_encoder.*`` in timm names (the projector as ``head.{0,1,3,4,6,7}``),
and ``predictor.{0,1,3,4}.*`` (two layers with a final affine-free BatchNorm). The ViT is timm's with qkv bias,
LayerNorm eps 1e-6, a learned position embedding with a class-token slot, and 12 heads for ViT-S. The authors'
evaluation loads the momentum encoder; ViT-T was trained without one, so its base encoder is taken.
"""

from __future__ import annotations

from typing import Any, Optional

from .mocov3 import convert_encoders, is_patchmix, training_state_dict
from .vit import Converted, imagenet_preprocessing

EXPECTED = (
    "a dict with 'state_dict' holding base_encoder.* / momentum_encoder.* in timm names and predictor.{0,1,3,4}.*"
)
ENCODERS = ("momentum_encoder", "base_encoder")


def recognise(obj: Any) -> Optional[str]:
    """``"patchmix"`` if ``obj`` is a PatchMix pre-training checkpoint, else None."""
    found = training_state_dict(obj)
    return "patchmix" if found and is_patchmix(*found) else None


def convert(obj: Any, *, layout: str = "patchmix", num_heads: Optional[int] = None, encoder: Optional[str] = None) -> Converted:
    """Convert a PatchMix checkpoint: the momentum encoder when present (as the authors evaluate), else the base one."""
    return convert_encoders(
        obj,
        layout="patchmix",
        preference=ENCODERS,
        num_heads=num_heads,
        encoder=encoder,
        notes=[],
        # The authors' kNN and linear evaluation: Resize(int(size / 224 * 256), bicubic), CenterCrop, ImageNet stats.
        preprocessing=lambda img_size: imagenet_preprocessing(),
    )
