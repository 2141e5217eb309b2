"""DINO-style training checkpoints: DINO/iBOT and ADCLR/PQCL (``Sherrylone/PQCL``; METHODS.md 4.5).

The checkpoint is a dict with ``teacher`` and ``student`` state dicts (plus ``optimizer``, ``epoch``, ``args``, the
loss's centers, ...). Each holds ``backbone.*`` (timm ``VisionTransformer`` names) and ``head.*`` (the DINO head:
``mlp.{0,2,4}``, ``last_layer.weight_g/v``); the student's keys carry DDP's ``module.`` prefix. ADCLR/PQCL backbones
add modules that the trained ViT does not use (``masked_embed``, ``query_block.*``, a top-level ``norm2.*``) and
have a fixed 2-D sin-cos position table; DINO's is learned. The teacher is converted, as DINO and PQCL evaluate.
A bare teacher dict, or a backbone already stripped of its prefix by PQCL's ``extract_backbone_weights.py`` (which
keeps the extra keys), is accepted too.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from .vit import Converted, assemble, imagenet_preprocessing, pick_encoder, strip_prefix, tensors_only

EXPECTED = "a dict with 'teacher' / 'student' state dicts holding backbone.* (timm names) and head.*"
ENCODERS = ("teacher", "student")
# Backbone modules of ADCLR/PQCL (and iBOT's mask token) that the ViT's forward pass never uses.
_EXTRAS = ("masked_embed", "query_block.", "norm2.")
_ADCLR_ONLY = ("query_block.", "norm2.")
_UNUSED = _EXTRAS + ("head.",)


def _backbone_prefix(sd: dict[str, Any]) -> Optional[str]:
    for prefix in ("backbone.", "module.backbone.", ""):
        if any(k.startswith(f"{prefix}patch_embed.proj.") for k in sd):
            return prefix
    return None


def _parts(obj: Any) -> dict[str, tuple[dict[str, Any], str]]:
    """``{part name: (state dict, backbone prefix)}`` for the teacher/student, or a bare backbone (part ``""``)."""
    if not isinstance(obj, dict):
        return {}
    parts = {}
    for name in ENCODERS:
        sd = obj.get(name)
        if isinstance(sd, dict) and (prefix := _backbone_prefix(sd)) is not None and prefix.endswith("backbone."):
            parts[name] = (sd, prefix)
    if not parts and (prefix := _backbone_prefix(obj)) is not None:
        backbone = strip_prefix(obj, prefix)
        # a bare timm backbone is not a DINO-style checkpoint: only one with the DINO prefix or the ADCLR extras is
        if prefix or any(k.startswith(_EXTRAS) for k in backbone):
            parts[""] = (obj, prefix)
    return parts


def _layout_of(backbone: dict[str, Any]) -> str:
    return "adclr" if any(k.startswith(_ADCLR_ONLY) for k in backbone) else "dino"


def recognise(obj: Any) -> Optional[str]:
    """``"adclr"`` or ``"dino"`` if ``obj`` is a DINO-style checkpoint, else None."""
    parts = _parts(obj)
    if not parts:
        return None
    sd, prefix = next(iter(parts.values()))
    return _layout_of(strip_prefix(sd, prefix))


def _source_tensors(obj: dict[str, Any], parts: dict[str, tuple[dict[str, Any], str]]) -> dict[str, torch.Tensor]:
    """Every tensor of the checkpoint: the teacher/student, and other all-tensor dicts such as the loss's centers."""
    if "" in parts:
        return tensors_only(obj, "The backbone state dict")
    out: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if isinstance(value, dict) and value and all(isinstance(v, torch.Tensor) for v in value.values()):
            out.update({f"{key}.{k}": v for k, v in value.items()})
    return out


def convert(obj: Any, *, layout: str = "dino", num_heads: Optional[int] = None, encoder: Optional[str] = None) -> Converted:
    """Convert the teacher (or ``encoder="student"``) backbone of a DINO or ADCLR/PQCL checkpoint."""
    parts = _parts(obj)
    assert parts, "convert() is called on recognised checkpoints only"
    chosen = pick_encoder(list(parts), encoder, layout=layout) if "" not in parts else ""
    sd, prefix = parts[chosen]
    sd = tensors_only(sd, f"The {chosen or 'backbone'} state dict")
    full = strip_prefix(sd, prefix)
    backbone = {k: v for k, v in full.items() if not k.startswith(_UNUSED)}
    dropped = sorted({k.split(".")[0] for k in full if k not in backbone})
    part_prefix = f"{chosen}.{prefix}" if chosen else prefix
    notes = [f"Backbone taken from '{chosen or 'the backbone'}'" + (f"; unused modules dropped: {', '.join(dropped)}." if dropped else ".")]
    return assemble(
        layout=layout,
        method=layout,
        backbone=backbone,
        source_tensors=_source_tensors(obj, parts),
        backbone_keys=[part_prefix + k for k in backbone],
        encoder=chosen or "backbone",
        num_heads=num_heads,
        notes=notes,
        preprocessing=lambda img_size: imagenet_preprocessing(),
    )
