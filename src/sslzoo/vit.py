"""The one construction path of sslzoo's ViTs: build a timm ``VisionTransformer``, describe it, fit weights to it.

:func:`build_vit` makes the network from JSON-serialisable ``model_args`` plus the two details timm's config cannot
express (LayerNorm eps and a fixed sin-cos position embedding); :func:`describe_vit` reads them back, so a saved model
is rebuilt exactly; :func:`load_weights` loads a timm-layout state dict, resampling the position embedding.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import timm
import torch
from timm.layers import LayerNorm, resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer

from . import registry
from .errors import CheckpointFormatError

_logger = logging.getLogger(__name__)

TIMM_DEFAULT_NORM_EPS = 1e-6
_TIMM_ARCH_BY_WIDTH = {
    192: "vit_tiny_patch16_224",
    384: "vit_small_patch16_224",
    768: "vit_base_patch16_224",
    1024: "vit_large_patch16_224",
}


def timm_architecture(model_args: dict[str, Any]) -> str:
    """The timm model name recorded in ``config.json``; ``model_args`` override all of its defaults."""
    return _TIMM_ARCH_BY_WIDTH.get(int(model_args.get("embed_dim", 768)), "vit_base_patch16_224")


def sincos_pos_embed(grid: tuple[int, int], dim: int, *, num_prefix_tokens: int = 1, temperature: float = 10000.0):
    """MoCo v3's fixed 2-D sin-cos position embedding, with zero rows for the prefix (class) tokens.

    Returns:
        Tensor of shape ``(1, num_prefix_tokens + h * w, dim)``.
    """
    if dim % 4:
        raise ValueError(f"a 2-D sin-cos position embedding needs a width divisible by 4, got {dim}")
    h, w = grid
    rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    omega = 1.0 / temperature ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    out_w = cols.flatten()[:, None] * omega[None]
    out_h = rows.flatten()[:, None] * omega[None]
    pe = torch.cat([out_w.sin(), out_w.cos(), out_h.sin(), out_h.cos()], dim=1).float()
    return torch.cat([torch.zeros(num_prefix_tokens, dim), pe], dim=0)[None]


def build_vit(
    model_args: dict[str, Any],
    *,
    norm_eps: float = TIMM_DEFAULT_NORM_EPS,
    pos_embed: registry.PosEmbed = "learn",
) -> VisionTransformer:
    """Build a randomly initialised timm ``VisionTransformer``.

    Args:
        model_args: ``VisionTransformer`` keyword arguments (JSON-serialisable).
        norm_eps: LayerNorm eps; timm's default is 1e-6, the APS model uses 1e-5.
        pos_embed: ``learn``, ``learn_no_cls`` (no position for the class token) or ``sincos`` (fixed, not trained).
    """
    args = dict(model_args)
    args.setdefault("num_classes", 0)
    if pos_embed == "learn_no_cls":
        args["no_embed_class"] = True
    if norm_eps != TIMM_DEFAULT_NORM_EPS:
        args["norm_layer"] = partial(LayerNorm, eps=norm_eps)
    model = timm.create_model(timm_architecture(args), pretrained=False, **args)
    if pos_embed == "sincos":
        with torch.no_grad():
            model.pos_embed.copy_(_sincos_for(model))
        model.pos_embed.requires_grad_(False)
    return model


def prefix_slots(model: VisionTransformer) -> int:
    """How many rows of ``model.pos_embed`` belong to the prefix (class, register) tokens: 0 with no_embed_class."""
    return 0 if model.no_embed_class else model.num_prefix_tokens


def _sincos_for(model: VisionTransformer) -> torch.Tensor:
    return sincos_pos_embed(model.patch_embed.grid_size, model.embed_dim, num_prefix_tokens=prefix_slots(model))


def describe_vit(model: VisionTransformer) -> tuple[dict[str, Any], float, registry.PosEmbed]:
    """Read back (model_args, norm_eps, pos_embed style) from a built ViT, so that it can be rebuilt exactly."""
    if not isinstance(model, VisionTransformer):
        raise TypeError(f"sslzoo saves timm VisionTransformer models, got {type(model).__name__}.")
    block = model.blocks[0]
    img = tuple(model.patch_embed.img_size)
    args: dict[str, Any] = dict(
        img_size=img[0] if img[0] == img[1] else list(img),
        patch_size=model.patch_embed.patch_size[0],
        embed_dim=model.embed_dim,
        depth=len(model.blocks),
        num_heads=block.attn.num_heads,
        mlp_ratio=block.mlp.fc1.out_features / model.embed_dim,
        qkv_bias=block.attn.qkv.bias is not None,
        class_token=model.cls_token is not None,
        reg_tokens=model.num_reg_tokens,
        no_embed_class=model.no_embed_class,
        global_pool=model.global_pool,
        fc_norm=not isinstance(model.fc_norm, torch.nn.Identity),
        pre_norm=not isinstance(model.norm_pre, torch.nn.Identity),
        qk_norm=not isinstance(block.attn.q_norm, torch.nn.Identity),
        dynamic_img_size=model.dynamic_img_size,
    )
    if not isinstance(block.ls1, torch.nn.Identity):
        args["init_values"] = 1e-5  # only the presence of layer scale matters: its values are weights
    if model.pos_embed is None:
        style: registry.PosEmbed = "learn"
        args["pos_embed"] = "none"
    elif not model.pos_embed.requires_grad:
        style = "sincos"
    else:
        style = "learn_no_cls" if model.no_embed_class else "learn"
    return args, float(model.norm.eps), style


def adapt_state_dict(state_dict: dict[str, torch.Tensor], model: VisionTransformer) -> dict[str, torch.Tensor]:
    """Fit a timm-layout backbone state dict to ``model``: position-embedding grid and classifier head."""
    sd = dict(state_dict)
    pe = sd.get("pos_embed")
    if pe is not None and pe.shape != model.pos_embed.shape:
        prefix = prefix_slots(model)
        if model.pos_embed.requires_grad:
            sd["pos_embed"] = resample_abs_pos_embed(
                pe, new_size=list(model.patch_embed.grid_size), num_prefix_tokens=prefix, interpolation="bicubic"
            )
        else:  # a fixed sin-cos table is recomputed for the new grid, not interpolated
            sd["pos_embed"] = _sincos_for(model)
    head_w = sd.get("head.weight")
    if head_w is not None:
        if model.num_classes == 0 or head_w.shape != model.head.weight.shape:
            if model.num_classes:
                _logger.info("Classifier head of the checkpoint (%s) replaced by a new one.", tuple(head_w.shape))
            sd.pop("head.weight", None)
            sd.pop("head.bias", None)
    return sd


def load_weights(model: VisionTransformer, state_dict: dict[str, torch.Tensor], *, source: str = "checkpoint") -> None:
    """Load a timm-layout state dict; only a missing classifier head is tolerated.

    Raises:
        CheckpointFormatError: keys are missing or unexpected, or shapes differ, naming them.
    """
    sd = adapt_state_dict(state_dict, model)
    own = model.state_dict()
    wrong_shape = [k for k, v in sd.items() if k in own and own[k].shape != v.shape]
    if wrong_shape:
        detail = ", ".join(f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in wrong_shape[:5])
        raise CheckpointFormatError(f"Weights from {source} do not fit this architecture: {detail}.")
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.startswith("head.")]
    if missing or unexpected:
        raise CheckpointFormatError(
            f"Weights from {source} do not match the architecture: missing {missing[:8]}, unexpected {unexpected[:8]}."
            " If this is a checkpoint in an upstream layout (APS, PatchMix, DINO, MoCo v3), convert it first with"
            " `sslzoo convert --from auto FILE OUT_DIR`."
        )
