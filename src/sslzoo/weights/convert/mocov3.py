"""MoCo v3 ViT training checkpoints, and the two-encoder layout that PatchMix inherits from MoCo v3.

A MoCo v3 checkpoint (``facebookresearch/moco-v3``) is ``{"epoch", "arch", "state_dict", "optimizer"}`` whose state
dict holds ``module.base_encoder.*`` and ``module.momentum_encoder.*`` (timm ``VisionTransformer`` names, the
projector as ``head.{0,1,3,4,6,7}``) and ``module.predictor.{0,1,3}`` (two layers, no final BatchNorm). Its ViT has
qkv bias, LayerNorm eps 1e-6, a fixed 2-D sin-cos position embedding and 12 heads for ViT-S. MoCo v3's own transfer
scripts take the base encoder, so that is the default here.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from ...errors import CheckpointFormatError
from .vit import Converted, assemble, imagenet_preprocessing, pick_encoder, strip_prefix, tensors_only

EXPECTED = (
    "a dict with 'state_dict' holding module.base_encoder.* / module.momentum_encoder.* in timm names and"
    " module.predictor.{0,1,3}.*"
)
ENCODERS = ("base_encoder", "momentum_encoder")


def training_state_dict(obj: Any) -> Optional[tuple[dict[str, Any], str]]:
    """(state dict, ``module.`` prefix or "") of a two-encoder MoCo-style checkpoint, or None if ``obj`` is not one."""
    if not isinstance(obj, dict):
        return None
    sd = obj.get("state_dict") if isinstance(obj.get("state_dict"), dict) else obj
    for prefix in ("module.", ""):
        if any(k.startswith(f"{prefix}base_encoder.patch_embed.proj.") for k in sd):
            return sd, prefix
    return None


def is_patchmix(sd: dict[str, Any], prefix: str) -> bool:
    """PatchMix's predictor ends in an affine-free BatchNorm (``predictor.4``), MoCo v3's does not.

    Without a predictor, the ``module.`` prefix that MoCo v3's DDP save leaves (PatchMix saves without it) decides.
    """
    if f"{prefix}predictor.4.running_mean" in sd:
        return True
    if any(k.startswith(f"{prefix}predictor.") for k in sd):
        return False
    return prefix == ""


def recognise(obj: Any) -> Optional[str]:
    """``"mocov3"`` if ``obj`` is a MoCo v3 training checkpoint, else None."""
    found = training_state_dict(obj)
    return "mocov3" if found and not is_patchmix(*found) else None


def convert_encoders(
    obj: Any,
    *,
    layout: str,
    preference: tuple[str, ...],
    num_heads: Optional[int],
    encoder: Optional[str],
    notes: list[str],
    preprocessing: Callable[[int], dict[str, Any]],
) -> Converted:
    """Convert one encoder of a two-encoder (base/momentum) checkpoint whose encoders use timm names."""
    found = training_state_dict(obj)
    assert found is not None, "convert() is called on recognised checkpoints only"
    sd, prefix = found
    sd = tensors_only(sd, f"The {layout} state dict")
    available = [name for name in preference if any(k.startswith(f"{prefix}{name}.") for k in sd)]
    chosen = pick_encoder(available, encoder, layout=layout)
    full_prefix = f"{prefix}{chosen}."
    encoder_sd = strip_prefix(sd, full_prefix)
    # head.{0,1,3,...} is the projector MLP; a plain head.weight/bias would be a classifier and is kept.
    backbone = {k: v for k, v in encoder_sd.items() if not (k.startswith("head.") and k.count(".") > 1)}
    if "patch_embed.proj.0.weight" in backbone:
        raise CheckpointFormatError(
            f"This {layout} encoder has a convolutional stem (MoCo v3's vit_conv_* models); timm's VisionTransformer"
            " has a single patch projection, so sslzoo cannot load it."
        )
    notes.append(f"Backbone taken from '{chosen}' (the checkpoint has: {', '.join(available)}).")
    return assemble(
        layout=layout,
        method=layout,
        backbone=backbone,
        source_tensors=sd,
        backbone_keys=[full_prefix + k for k in backbone],
        encoder=chosen,
        num_heads=num_heads,
        notes=notes,
        preprocessing=preprocessing,
    )


def convert(obj: Any, *, layout: str = "mocov3", num_heads: Optional[int] = None, encoder: Optional[str] = None) -> Converted:
    """Convert a MoCo v3 ViT checkpoint; the base encoder unless ``encoder="momentum_encoder"``."""
    return convert_encoders(
        obj,
        layout="mocov3",
        preference=ENCODERS,
        num_heads=num_heads,
        encoder=encoder,
        notes=[],
        preprocessing=lambda img_size: imagenet_preprocessing(interpolation="bilinear"),
    )

