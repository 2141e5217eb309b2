"""CLS-to-patch self-attention maps of a ViT (DINO's Figure 1 view), as tensors and as pictures.

:func:`attention_maps` hooks the input of one block's attention module and recomputes the softmax attention of the
class token over the patch tokens from that module's own ``qkv`` (so it works whether or not timm runs the fused
kernel, which never materialises the attention matrix). :func:`render_attention` draws an image beside one heat map
per head with PIL only, so the ``sslzoo attention`` command needs no plotting library.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from .data import eval_transform, pil_to_uint8
from .errors import SslzooError

# A perceptually ordered dark-to-bright map (anchors of matplotlib's "inferno"), interpolated to 256 entries.
_INFERNO_ANCHORS = np.array([
    [0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66], [245, 125, 21], [250, 193, 39],
    [252, 255, 164],
], dtype=np.float64)
_COLORMAP = np.stack([np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_INFERNO_ANCHORS)), c)
                      for c in _INFERNO_ANCHORS.T], axis=1).astype(np.uint8)


class AttentionError(SslzooError, ValueError):
    """A model or block from which CLS attention cannot be read."""


def cls_attention(attn: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Softmax attention of the class token (the first) over all tokens, per head: float (B, heads, N).

    Args:
        attn: a timm ``Attention`` module (its own ``qkv``, ``q_norm``, ``k_norm`` and ``scale`` are used, so the
            weights are those of the unfused path whichever kernel the model runs).
        tokens: (B, N, D), the module's input (the block's ``norm1`` already applied).
    """
    batch, count, _ = tokens.shape
    qkv = attn.qkv(tokens).reshape(batch, count, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])
    return ((q[:, :, :1] * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)[:, :, 0]


@torch.no_grad()
def attention_maps(model: torch.nn.Module, images: torch.Tensor, *, block: int = -1) -> torch.Tensor:
    """Attention of the class token to every patch token, per head, in one block.

    Args:
        model: a timm ``VisionTransformer`` with a class token (run in eval mode; its mode is restored).
        images: model-ready float images (B, 3, H, W), normalised as the model expects.
        block: which block (default the last, as in DINO's pictures).

    Returns:
        float (B, heads, H / patch, W / patch): softmax weights of the CLS query over the patch tokens (a row also
        gives weight to the prefix tokens, so a map sums to at most 1).
    """
    blocks = getattr(model, "blocks", None)
    if blocks is None or getattr(model, "cls_token", None) is None:
        raise AttentionError("attention maps need a ViT with blocks and a class token (a timm VisionTransformer).")
    try:
        attn = blocks[block].attn
    except IndexError:
        raise AttentionError(f"block {block} does not exist: the model has {len(blocks)} blocks.") from None
    captured: list[torch.Tensor] = []
    handle = attn.register_forward_pre_hook(lambda _module, args: captured.append(args[0]))
    was_training = model.training
    model.eval()
    try:
        model.forward_features(images)
    finally:
        handle.remove()
        model.train(was_training)
    weights = cls_attention(attn, captured[0])
    batch, heads, tokens = weights.shape
    prefix = getattr(model, "num_prefix_tokens", 1)
    patch = model.patch_embed.patch_size
    grid = (images.shape[-2] // patch[0], images.shape[-1] // patch[1])
    if grid[0] * grid[1] != tokens - prefix:
        raise AttentionError(f"{tokens - prefix} patch tokens do not form the {grid[0]}x{grid[1]} grid of the input.")
    return weights[:, :, prefix:].reshape(batch, heads, *grid)


def _colorize(heat: np.ndarray) -> np.ndarray:
    lo, hi = float(heat.min()), float(heat.max())
    scaled = (heat - lo) / (hi - lo) if hi > lo else np.zeros_like(heat)
    return _COLORMAP[np.clip((scaled * 255).round().astype(np.int64), 0, 255)]


def render_attention(image: torch.Tensor, maps: torch.Tensor, *, scale: int = 4, gap: int = 2) -> Image.Image:
    """One row: the image, then each head's map (min-max scaled per head, bilinearly upsampled to the image).

    Args:
        image: uint8 (3, H, W), the picture the model saw (before normalisation).
        maps: (heads, h, w) from :func:`attention_maps`.
        scale: pixel magnification of the whole row (CIFAR images are 32 px).
        gap: white pixels between panels.
    """
    height, width = image.shape[-2:]
    up = F.interpolate(maps[None].float(), size=(height, width), mode="bilinear", align_corners=False)[0]
    panels = [image.permute(1, 2, 0).cpu().numpy().astype(np.uint8)] + [_colorize(m.cpu().numpy()) for m in up]
    row = np.full((height, len(panels) * (width + gap) - gap, 3), 255, dtype=np.uint8)
    for i, panel in enumerate(panels):
        row[:, i * (width + gap):i * (width + gap) + width] = panel
    picture = Image.fromarray(row)
    return picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST) if scale > 1 else picture


def attention_figure(
    model: torch.nn.Module, images: Sequence[Union[str, Path, Image.Image]], *, block: int = -1, scale: int = 4,
) -> Image.Image:
    """A picture with one row per image: the model's view of it and its CLS attention per head.

    Images go through the model's own eval transform (resize, centre crop, normalisation from its
    ``pretrained_cfg``), so the maps show what the model attends to at its input size.
    """
    transform = eval_transform(model)
    views, inputs = [], []
    for item in images:
        try:
            img = item if isinstance(item, Image.Image) else Image.open(item)
            pixels = pil_to_uint8(img.convert("RGB"))
        except (OSError, ValueError) as e:
            raise AttentionError(f"could not read image {item}: {e}") from e
        view = transform.resize_crop(pixels)
        views.append(view)
        inputs.append(transform.normalize(view))
    maps = attention_maps(model, torch.stack(inputs), block=block)
    rows = [render_attention(view, m, scale=scale) for view, m in zip(views, maps)]
    sheet = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows) + 4 * (len(rows) - 1)), "white")
    top = 0
    for r in rows:
        sheet.paste(r, (0, top))
        top += r.height + 4
    return sheet
