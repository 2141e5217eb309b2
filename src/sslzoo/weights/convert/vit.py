"""A timm ViT rebuilt from a backbone state dict in timm key names, for checkpoints that record only tensors.

Patch size, image size, width, depth, MLP ratio, qkv bias, classifier and position-embedding layout are read from
the tensors. Two details are not in the tensors and come from the layout's convention instead: the LayerNorm eps
and the number of attention heads (a ViT-S has 6 heads in DeiT/DINO/APS models and 12 in MoCo v3/PatchMix models).
Every such assumption is returned as a note for the model card.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

import torch
from timm.models.vision_transformer import VisionTransformer

from ... import registry
from ...errors import CheckpointFormatError
from ...preprocessing import IMAGENET_MEAN, IMAGENET_STD
from ...vit import build_vit, load_weights, sincos_pos_embed

# A sin-cos table computed in float32 by the upstream code differs from sslzoo's float64 one by ~1e-6.
SINCOS_ATOL = 1e-4
_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.")
REQUIRED_KEYS = ("cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.attn.qkv.weight",
                 "blocks.0.mlp.fc1.weight", "norm.weight")


@dataclass
class Converted:
    """An upstream checkpoint turned into a timm ViT, with what is needed to write its hub folder.

    Attributes:
        layout: the upstream layout (``aps``, ``patchmix``, ``adclr``, ``dino``, ``mocov3``).
        method: the registry method whose model this is.
        model: the timm ``VisionTransformer`` holding the converted backbone.
        encoder: which sub-model of the checkpoint the backbone was taken from (e.g. ``momentum_encoder``).
        source_tensors: every tensor of the source checkpoint under its upstream name (the full checkpoint).
        backbone_keys: the upstream names that became the backbone; the others are heads, predictors, other encoders.
        norm_eps: the LayerNorm eps of the model.
        pos_embed: the position-embedding style (see :func:`sslzoo.models.build_vit`).
        preprocessing: timm ``pretrained_cfg`` keys of the authors' evaluation transform (mean, std, crop_pct, ...).
        notes: assumptions and choices made, for the card.
        source_name: the source file's name, when converted from a file.
        source_sha256: the source file's sha256, when converted from a file.
    """

    layout: str
    method: str
    model: VisionTransformer
    encoder: str
    source_tensors: dict[str, torch.Tensor]
    backbone_keys: frozenset[str]
    norm_eps: float
    pos_embed: registry.PosEmbed
    preprocessing: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    source_name: Optional[str] = None
    source_sha256: Optional[str] = None

    @property
    def extra_keys(self) -> list[str]:
        """Upstream tensors outside the backbone: projector, predictor, heads, the other encoder."""
        return sorted(k for k in self.source_tensors if k not in self.backbone_keys)


def imagenet_preprocessing(*, crop_pct: float = 0.875, interpolation: str = "bicubic") -> dict[str, Any]:
    """The usual ImageNet evaluation transform: resize to ``size / crop_pct``, centre crop, ImageNet mean/std."""
    return dict(
        mean=IMAGENET_MEAN, std=IMAGENET_STD, crop_pct=crop_pct, crop_mode="center",
        interpolation=interpolation,
    )


def pick_encoder(available: list[str], requested: Optional[str], *, layout: str) -> str:
    """The sub-model to convert: ``requested``, or the first of ``available`` (listed in the layout's preference)."""
    if requested is None:
        return available[0]
    if requested not in available:
        raise CheckpointFormatError(
            f"This {layout} checkpoint has no '{requested}' encoder; it has: {', '.join(available)}."
        )
    return requested


def strip_prefix(state_dict: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The entries of ``state_dict`` under ``prefix``, with the prefix removed."""
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def tensors_only(obj: Any, what: str) -> dict[str, torch.Tensor]:
    """A ``{name: tensor}`` dict, or a clear error naming what ``obj`` is instead."""
    if not isinstance(obj, dict) or not obj:
        raise CheckpointFormatError(f"{what} should be a non-empty dict of tensors, got {type(obj).__name__}.")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointFormatError(f"{what} holds entries that are not tensors: {bad[:5]}.")
    return obj


def num_heads_for(method: str, width: int, override: Optional[int]) -> tuple[int, str]:
    """The head count of a layout's model of this width, and the card note that says where it came from."""
    if override is not None:
        if override <= 0 or width % override:
            raise CheckpointFormatError(f"num_heads={override} does not divide the embedding width {width}.")
        return override, f"num_heads={override}, as given by the caller (checkpoints do not record head counts)."
    by_width = {size.embed_dim: registry.vit_args(method, size, patch_size=16, img_size=224)[0]["num_heads"]
                for size in registry.SIZES.values()}
    if width in by_width:
        heads = by_width[width]
        return heads, (
            f"num_heads={heads} assumed from the {method} convention for width {width} (checkpoints do not record"
            " head counts); if the file came from another model, convert again with --num-heads N."
        )
    if width % 64:
        raise CheckpointFormatError(
            f"Embedding width {width} has no head-count convention in the {method} layout and is not a multiple of 64:"
            " pass num_heads= (CLI: --num-heads N)."
        )
    heads = width // 64
    return heads, (
        f"num_heads={heads} assumed (head width 64) for the unusual embedding width {width}; checkpoints do not record"
        " head counts, so convert again with --num-heads N if the model had another."
    )


def _depth(sd: dict[str, torch.Tensor]) -> int:
    indices = {int(m.group(1)) for k in sd if (m := _BLOCK_KEY.match(k))}
    depth = max(indices) + 1
    missing = sorted(set(range(depth)) - indices)
    if missing:
        raise CheckpointFormatError(f"The checkpoint lacks transformer blocks {missing[:8]} of {depth}: it is incomplete.")
    return depth


def _token_grid(tokens: int) -> tuple[int, bool]:
    """(grid side, has a class-token slot) for a position table of ``tokens`` rows on a square grid."""
    for n, has_slot in ((tokens - 1, True), (tokens, False)):
        side = math.isqrt(max(n, 0))
        if n > 0 and side * side == n:
            return side, has_slot
    raise CheckpointFormatError(f"A position embedding of {tokens} rows fits no square patch grid.")


def _pos_embed_style(pe: torch.Tensor, grid: int, has_slot: bool, notes: list[str]) -> registry.PosEmbed:
    """``sincos`` when the table is sslzoo's fixed 2-D sin-cos table, else a learned style."""
    if not has_slot:
        return "learn_no_cls"
    dim = pe.shape[-1]
    if dim % 4:
        return "learn"
    table = sincos_pos_embed((grid, grid), dim).to(pe.dtype)
    if torch.allclose(pe.float(), table, atol=SINCOS_ATOL):
        notes.append("The position embedding is a fixed 2-D sin-cos table (zero class row); it is kept as stored and frozen.")
        return "sincos"
    half = dim // 2  # MoCo v3 builds the same table with its row and column halves swapped
    swapped = torch.cat([table[..., half:], table[..., :half]], dim=-1)
    if torch.allclose(pe.float(), swapped, atol=SINCOS_ATOL):
        notes.append(
            "The position embedding is MoCo v3's fixed 2-D sin-cos table, whose (row, column) halves are in the"
            " opposite order to sslzoo's; it is kept as stored, exact at this image size, and loaded as a learned"
            " table, so a new image size interpolates it rather than recomputing it."
        )
    return "learn"


def infer_vit_args(
    sd: dict[str, torch.Tensor], *, method: str, num_heads: Optional[int], notes: list[str]
) -> tuple[dict[str, Any], registry.PosEmbed]:
    """``VisionTransformer`` arguments and position-embedding style of a timm-layout backbone state dict."""
    missing = [k for k in REQUIRED_KEYS if k not in sd]
    if missing:
        raise CheckpointFormatError(f"The backbone lacks {missing}: it is not a complete ViT.")
    proj = sd["patch_embed.proj.weight"]
    if proj.ndim != 4 or proj.shape[-1] != proj.shape[-2]:
        raise CheckpointFormatError(f"patch_embed.proj.weight has shape {tuple(proj.shape)}, not a square patch conv.")
    width, in_chans, patch = proj.shape[0], proj.shape[1], proj.shape[-1]
    pe = sd["pos_embed"]
    if pe.ndim != 3 or pe.shape[0] != 1 or pe.shape[2] != width:
        raise CheckpointFormatError(f"pos_embed has shape {tuple(pe.shape)}; (1, tokens, {width}) was expected.")
    grid, has_slot = _token_grid(pe.shape[1])
    heads, heads_note = num_heads_for(method, width, num_heads)
    notes.append(heads_note)
    head = sd.get("head.weight")
    args: dict[str, Any] = dict(
        img_size=grid * patch,
        patch_size=patch,
        embed_dim=width,
        depth=_depth(sd),
        num_heads=heads,
        mlp_ratio=sd["blocks.0.mlp.fc1.weight"].shape[0] / width,
        qkv_bias="blocks.0.attn.qkv.bias" in sd,
        class_token=True,
        global_pool="token",
        no_embed_class=not has_slot,
        num_classes=int(head.shape[0]) if head is not None else 0,
    )
    if in_chans != 3:
        args["in_chans"] = in_chans
    return args, _pos_embed_style(pe, grid, has_slot, notes)


def assemble(
    *,
    layout: str,
    method: str,
    backbone: dict[str, torch.Tensor],
    source_tensors: dict[str, torch.Tensor],
    backbone_keys: Iterable[str],
    encoder: str,
    num_heads: Optional[int],
    notes: list[str],
    preprocessing: Callable[[int], dict[str, Any]],
) -> Converted:
    """Build the timm ViT that ``backbone`` (timm key names) describes, load it, and wrap it as :class:`Converted`.

    Every backbone tensor must be used: a missing, extra or misshapen one is a clear error, not a silent skip.
    """
    args, style = infer_vit_args(backbone, method=method, num_heads=num_heads, notes=notes)
    eps = registry.METHODS[method].norm_eps
    model = build_vit(args, norm_eps=eps, pos_embed=style)
    try:
        load_weights(model, backbone, source=f"the {layout} checkpoint")
    except CheckpointFormatError as e:
        raise CheckpointFormatError(
            f"The backbone of this {layout} checkpoint does not form a timm ViT (a tensor is missing, extra or of the"
            f" wrong shape; the file may be damaged or of another layout): {e}"
        ) from e
    return Converted(
        layout=layout,
        method=method,
        model=model.eval(),
        encoder=encoder,
        source_tensors=source_tensors,
        backbone_keys=frozenset(backbone_keys),
        norm_eps=eps,
        pos_embed=style,
        preprocessing=preprocessing(int(model.patch_embed.img_size[0])),
        notes=notes,
    )
