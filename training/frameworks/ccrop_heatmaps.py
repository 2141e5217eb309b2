"""ContrastiveCrop's heat maps of a ViT: the encoder's pass that the box bank is updated from (METHODS 3.1, 3.7).

The heat map comes from the last block's patch tokens after the final norm, on a (H/p) x (W/p) grid: ``kind``
``channel_sum`` is the paper's M = sum_c F_c, ``token_norm`` the tokens' L2 norm (the default: a channel sum of
layer-normed tokens is close to constant), ``cls_attention`` the last block's CLS -> patch attention averaged over
heads (:func:`sslzoo.attention.cls_attention`, the weights ``sslzoo attention`` draws). The boxes are drawn from the
maps by ``training.views.contrastive_crop.heatmap_boxes``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from timm.models.vision_transformer import VisionTransformer

from sslzoo.attention import cls_attention
from ..errors import ViewConfigError
from .tokens import embed_tokens, patch_tokens

HEATMAP_KINDS = ("channel_sum", "token_norm", "cls_attention")


def _last_block_cls_attention(vit: VisionTransformer, x: Tensor) -> Tensor:
    """(B, N) CLS -> token attention of the last block, averaged over heads, for tokens ``x`` entering that block."""
    block = vit.blocks[-1]
    return cls_attention(block.attn, block.norm1(x)).mean(dim=1)


@torch.no_grad()
def vit_heatmaps(vit: VisionTransformer, images: Tensor, *, kind: str = "token_norm") -> Tensor:
    """Heat maps (B, H/p, W/p) of normalised images from an eval-mode, no-grad pass of ``vit``."""
    if kind not in HEATMAP_KINDS:
        raise ViewConfigError(f"heat-map kind must be one of {HEATMAP_KINDS}, got {kind!r}.")
    was_training = vit.training
    vit.eval()
    try:
        x = vit.blocks[:-1](embed_tokens(vit, images))
        if kind == "cls_attention":
            maps = patch_tokens(vit, _last_block_cls_attention(vit, x))
        else:
            patches = patch_tokens(vit, vit.norm(vit.blocks[-1](x)))
            maps = patches.sum(dim=-1) if kind == "channel_sum" else patches.norm(dim=-1)
    finally:
        vit.train(was_training)
    patch = vit.patch_embed.patch_size
    return maps.reshape(images.shape[0], images.shape[-2] // patch[0], images.shape[-1] // patch[1]).float()
