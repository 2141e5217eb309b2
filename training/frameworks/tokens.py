"""Token-level helpers on a timm ``VisionTransformer``: the prefix rule, embeddings, and a pass on a patch subset.

The prefix rule: timm's ``no_embed_class=True`` layout (the APS model) gives the class and register tokens no
position embedding, so ``pos_embed`` holds the patches only; otherwise its first ``num_prefix_tokens`` rows belong
to the prefix tokens (``sslzoo.vit.prefix_slots``, the rule the library builds and resamples position tables by).

:func:`encode_subset` runs the ViT on a subset of its patch tokens (APS). The official APS model adds the learned
position embedding to the patches only and gives CLS none; that is the ``no_embed_class=True`` layout and is
reproduced exactly. With a class slot (``no_embed_class=False``) the class token gets its slot's embedding, as in
timm's own ``forward_features``, so that a full index reproduces the plain forward pass.
"""

from __future__ import annotations

import functools

import torch
import torch.utils.checkpoint
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor

from sslzoo.vit import prefix_slots
from ..errors import MethodConfigError


def patch_pos_embed(vit: VisionTransformer) -> Tensor:
    """The patch part (1, N, D) of ``vit.pos_embed``, without the class slots."""
    return vit.pos_embed[:, prefix_slots(vit):]


def prefix_tokens(vit: VisionTransformer, batch: int) -> Tensor:
    """The class (and register) tokens of ``vit`` for a batch, (batch, P, D), plus their position slots if any."""
    parts = [t.expand(batch, -1, -1) for t in (vit.cls_token, vit.reg_token) if t is not None]
    if not parts:
        raise MethodConfigError("this method needs a ViT with a class token (class_token=True).")
    prefix = torch.cat(parts, dim=1)
    slots = prefix_slots(vit)
    if vit.pos_embed is not None and slots:
        prefix = prefix + vit.pos_embed[:, :slots]
    return prefix


def run_blocks(vit: VisionTransformer, x: Tensor, block_fn=None) -> Tensor:
    """``x`` through ``vit.blocks`` (each ``block_fn(block, x)``, default the block itself), with activation
    checkpointing per block when ``vit.set_grad_checkpointing()`` asked for it and gradients are being recorded."""
    checkpointing = getattr(vit, "grad_checkpointing", False) and torch.is_grad_enabled()
    for block in vit.blocks:
        step = block if block_fn is None else functools.partial(block_fn, block)
        x = torch.utils.checkpoint.checkpoint(step, x, use_reentrant=False) if checkpointing else step(x)
    return x


def embed_tokens(vit: VisionTransformer, images: Tensor) -> Tensor:
    """The token sequence (B, P + N, D) that enters ``vit.blocks``, as in timm's ``forward_features``."""
    return vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(images))))


def patch_tokens(vit: VisionTransformer, tokens: Tensor) -> Tensor:
    """The patch tokens (B, N, D) of a full sequence (B, P + N, D): the prefix tokens dropped."""
    return tokens[:, vit.num_prefix_tokens:]


def encode_subset(vit: VisionTransformer, images: Tensor, index: Tensor) -> Tensor:
    """CLS output of ``vit`` when only the patch tokens ``index`` (B, n) of ``images`` are fed to its blocks.

    Patch-embed, add the position embedding to every patch (pos-embed first, so the order of ``index`` does not
    matter), gather, prepend the prefix tokens, run the blocks and the final norm, and pool like
    ``vit.forward_head(..., pre_logits=True)`` (CLS for ``global_pool='token'``).
    """
    tokens = vit.patch_embed(images)
    if vit.pos_embed is not None:
        tokens = tokens + patch_pos_embed(vit)
    tokens = tokens.gather(1, index.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
    x = vit.norm_pre(vit.pos_drop(torch.cat([prefix_tokens(vit, tokens.shape[0]), tokens], dim=1)))
    x = vit.norm(run_blocks(vit, x))
    return vit.forward_head(x, pre_logits=True)
