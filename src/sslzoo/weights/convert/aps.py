"""The APS release (``visresearch/aps``): a bare state dict of the authors' custom ViT (METHODS.md 1.8).

Pre-training files hold ``base_encoder.*`` (the ViT, with the projector as ``base_encoder.fc.*``) and
``predictor.*``; a fine-tuned model's state dict holds the same ViT keys without the prefix and a classifier
``fc.weight``/``fc.bias``. The ViT is made of timm Blocks with no qkv bias and LayerNorm eps 1e-5; its position
table ``pos_embedding`` is (N, 1, D), sequence first, with no class-token slot, which is timm's ``no_embed_class``.
The authors' fine-tuned files themselves are pickled module objects: they are refused when read (see
:func:`sslzoo.weights.convert.read_checkpoint`).
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from ...errors import CheckpointFormatError
from ...preprocessing import CIFAR10_MEAN, CIFAR10_STD_APS
from .vit import Converted, assemble, imagenet_preprocessing, pick_encoder, tensors_only

EXPECTED = (
    "a bare state dict with base_encoder.patchify.weight, base_encoder.pos_embedding of shape (N, 1, D) and"
    " base_encoder.transformer.{i}.* (or the same keys without the prefix, for a fine-tuned model)"
)
_RENAMES = (("patchify.", "patch_embed.proj."), ("transformer.", "blocks."), ("layer_norm.", "norm."))
_PREFIXES = ("base_encoder.", "module.base_encoder.", "", "module.")


def _encoder_prefix(obj: Any) -> Optional[str]:
    if not isinstance(obj, dict):
        return None
    for prefix in _PREFIXES:
        if f"{prefix}patchify.weight" in obj and f"{prefix}pos_embedding" in obj:
            return prefix
    return None


def recognise(obj: Any) -> Optional[str]:
    """``"aps"`` if ``obj`` is an APS state dict, else None."""
    return "aps" if _encoder_prefix(obj) is not None else None


def _timm_key(key: str) -> Optional[str]:
    """The timm name of an APS encoder key; None for the projector (``fc.{0,1,...}``)."""
    if key in ("cls_token", "pos_embedding"):
        return "pos_embed" if key == "pos_embedding" else key
    for old, new in _RENAMES:
        if key.startswith(old):
            return new + key[len(old):]
    if key in ("fc.weight", "fc.bias"):  # the fine-tuned model's classifier
        return "head." + key[len("fc."):]
    return None


def preprocessing(img_size: int) -> dict[str, Any]:
    if img_size == 32:  # APS pre-trains with its own CIFAR statistics and evaluates at 32 px without resizing
        return dict(
            mean=CIFAR10_MEAN, std=CIFAR10_STD_APS, crop_pct=1.0, crop_mode="center", interpolation="bicubic"
        )
    return imagenet_preprocessing()


def convert(obj: Any, *, layout: str = "aps", num_heads: Optional[int] = None, encoder: Optional[str] = None) -> Converted:
    """Convert an APS state dict (see the module docstring)."""
    sd = tensors_only(obj, "The APS state dict")
    prefix = _encoder_prefix(sd)
    assert prefix is not None, "convert() is called on recognised checkpoints only"
    chosen = pick_encoder(["base_encoder"], encoder, layout="aps")
    backbone: dict[str, torch.Tensor] = {}
    used = []
    for key, value in sd.items():
        if not key.startswith(prefix):
            continue
        new = _timm_key(key[len(prefix):])
        if new is not None:
            backbone[new] = value
            used.append(key)
    pe = backbone["pos_embed"]
    if pe.ndim != 3 or pe.shape[1] != 1:
        raise CheckpointFormatError(
            f"{prefix}pos_embedding has shape {tuple(pe.shape)}; the APS layout stores it as (N, 1, D)."
        )
    backbone["pos_embed"] = pe.permute(1, 0, 2).contiguous()
    notes = [
        "Converted from the APS custom ViT: patchify -> patch_embed.proj, transformer -> blocks, layer_norm -> norm;"
        " pos_embedding (N, 1, D) -> pos_embed (1, N, D) with no class-token slot (the class token has no position);"
        " qkv without bias; LayerNorm eps 1e-5.",
    ]
    return assemble(
        layout="aps",
        method="aps",
        backbone=backbone,
        source_tensors=sd,
        backbone_keys=used,
        encoder=chosen if prefix.endswith("base_encoder.") else "vit",
        num_heads=num_heads,
        notes=notes,
        preprocessing=preprocessing,
    )
