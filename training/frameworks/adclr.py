"""ADCLR's passes of a ViT over pixel query crops (METHODS 4.1; the paper's method, not the released PQCL variant).

Query crops are cut from each image and appended, as patch tokens, to the student's global-view sequence. Every
block processes [X; Y] with X = [CLS, view patches] and Y = the query tokens under a one-way mask: X attends only
to X, Y attends to all of [X; Y]. The view's outputs are therefore exactly those of the plain ViT, and no parameter
is added: the blocks' own submodules (norm1, attn.qkv, attn.proj, norm2, mlp, layer scales, drop paths) are called on
the joint sequence. The mask is realised as two attention calls per block (X over X, Y over [X; Y]) rather than an
additive -inf mask, which gives the same result and keeps the fused kernels usable. Drop path is drawn once per
sample for the joint sequence.

The teacher's targets (:func:`encode_queries_standalone`) follow the released code: each query crop is encoded on
its own, with its own CLS, and its patch tokens are returned.

Position embedding of a query crop: the patch part of ``vit.pos_embed`` resampled to the crop's own patch grid
(bicubic, antialiased: timm's ``resample_abs_pos_embed``, which is what timm does for an input of another size), in
the student and in the teacher alike. A query therefore carries its layout (which patch is where inside the crop),
not its location in the view: the paper's queries are correspondence-free, and the location-aware positional
queries belong to PQCL.

The query crops themselves are cut by ``training.views.adclr_queries.query_crops`` (the ADCLR method's ``queries``
crop spec).
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor
from torch.nn import functional as F
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import Block, VisionTransformer

from ..errors import ViewConfigError
from .tokens import embed_tokens, patch_pos_embed, prefix_tokens, run_blocks


def one_way_mask(n_view: int, n_query: int, *, device: torch.device | str | None = None) -> Tensor:
    """ADCLR's attention mask over [view tokens; query tokens]: bool (N, N), True where row may attend to column.

    View tokens attend to view tokens only; query tokens attend to everything. As ``attn_mask`` of
    ``F.scaled_dot_product_attention`` on the joint sequence it gives what :func:`forward_with_queries` computes
    (which splits the attention in two calls instead, to keep the fused kernels).

    >>> from sslzoo.training.frameworks.adclr import one_way_mask
    >>> one_way_mask(2, 1).int()
    tensor([[1, 1, 0],
            [1, 1, 0],
            [1, 1, 1]], dtype=torch.int32)
    >>> bool(one_way_mask(3, 2)[:3, 3:].any())  # the view's tokens never see the queries
    False
    """
    mask = torch.ones(n_view + n_query, n_view + n_query, dtype=torch.bool, device=device)
    mask[:n_view, n_view:] = False
    return mask


def _check_supported(vit: VisionTransformer) -> None:
    for block in vit.blocks:
        if type(block) is not Block or not hasattr(block.attn, "qkv"):
            raise ViewConfigError(
                f"ADCLR queries need timm's standard pre-norm Block with fused qkv attention, got "
                f"{type(block).__name__}/{type(block.attn).__name__}."
            )


def embed_crops(vit: VisionTransformer, crops: Tensor) -> Tensor:
    """Patch tokens of crops (N, 3, s, s) plus the position embedding resampled to their grid: (N, L, D)."""
    patch = vit.patch_embed.patch_size
    if crops.shape[-2] % patch[0] or crops.shape[-1] % patch[1]:
        raise ViewConfigError(f"query crops of {tuple(crops.shape[-2:])} px do not tile into {tuple(patch)} patches; "
                              "choose a query size that is a multiple of the ViT's patch size.")
    tokens = vit.patch_embed.proj(crops)
    grid = tokens.shape[-2:]
    tokens = vit.patch_embed.norm(tokens.flatten(2).transpose(1, 2))
    if vit.pos_embed is None:
        return tokens
    pos = patch_pos_embed(vit)
    if tuple(grid) != tuple(vit.patch_embed.grid_size):
        pos = resample_abs_pos_embed(pos, new_size=list(grid), old_size=list(vit.patch_embed.grid_size),
                                     num_prefix_tokens=0)
    return tokens + pos


def _one_way_attention(block: Block, h: Tensor, n_view: int) -> Tensor:
    """The block's attention on normed tokens ``h`` where the first ``n_view`` tokens ignore the rest."""
    attn = block.attn
    batch, tokens, _ = h.shape
    qkv = attn.qkv(h).reshape(batch, tokens, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    dropout = attn.attn_drop.p if attn.training else 0.0
    view = F.scaled_dot_product_attention(q[:, :, :n_view], k[:, :, :n_view], v[:, :, :n_view], dropout_p=dropout)
    query = F.scaled_dot_product_attention(q[:, :, n_view:], k, v, dropout_p=dropout)
    out = torch.cat([view, query], dim=2).transpose(1, 2).reshape(batch, tokens, attn.attn_dim)
    out = attn.norm(out)
    gate = getattr(attn, "gate", None)
    if gate is not None:
        out = out * gate(h).sigmoid()
    return attn.proj_drop(attn.proj(out))


def _one_way_block(block: Block, x: Tensor, n_view: int) -> Tensor:
    x = x + block.drop_path1(block.ls1(_one_way_attention(block, block.norm1(x), n_view)))
    return x + block.drop_path2(block.ls2(block.mlp(block.norm2(x))))


def forward_tokens_with_queries(vit: VisionTransformer, x: Tensor, queries: Tensor) -> tuple[Tensor, Tensor]:
    """All final-normed tokens of the joint pass: (view tokens (B, P + N, D), query tokens (B, nq * L, D)).

    The view tokens equal ``vit.forward_features(x)``: the queries cannot reach them.
    """
    _check_supported(vit)
    view = embed_tokens(vit, x)
    batch = queries.shape[0]
    query = embed_crops(vit, queries.flatten(0, 1))
    query = vit.norm_pre(vit.pos_drop(query)).reshape(batch, -1, view.shape[-1])
    n_view = view.shape[1]
    tokens = torch.cat([view, query], dim=1)
    tokens = vit.norm(run_blocks(vit, tokens, functools.partial(_one_way_block, n_view=n_view)))
    return tokens[:, :n_view], tokens[:, n_view:]


def forward_with_queries(vit: VisionTransformer, x: Tensor, queries: Tensor) -> tuple[Tensor, Tensor]:
    """Student pass of a global view with its query crops appended under the one-way mask.

    Args:
        vit: a timm ``VisionTransformer`` (standard ``Block``s).
        x: the view, (B, 3, H, W), normalised.
        queries: query crops (B, nq, 3, s, s), normalised, s a multiple of the patch size.

    Returns:
        (final-normed CLS (B, D), final-normed query tokens (B, nq * L, D) with L = (s / p)^2, crop-major order).
    """
    view, query = forward_tokens_with_queries(vit, x, queries)
    return view[:, 0], query


def encode_queries_standalone(vit: VisionTransformer, queries: Tensor) -> Tensor:
    """Teacher targets: every query crop encoded alone ([its own CLS, its patches]); its patch tokens after the norm.

    Returns:
        (B, nq * L, D) in the same order as :func:`forward_with_queries`' query tokens.
    """
    batch = queries.shape[0]
    flat = embed_crops(vit, queries.flatten(0, 1))
    prefix = prefix_tokens(vit, flat.shape[0])
    tokens = vit.norm_pre(vit.pos_drop(torch.cat([prefix, flat], dim=1)))
    tokens = vit.norm(vit.blocks(tokens))[:, prefix.shape[1]:]
    return tokens.reshape(batch, -1, tokens.shape[-1])
