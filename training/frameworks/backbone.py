"""The one place where training builds its ViT backbones, and the small architectures for CPU runs.

``arch`` is resolved in this order:

- a dict: ``VisionTransformer`` keyword arguments for :func:`sslzoo.models.build_vit`, plus optional ``norm_eps``
  and ``pos_embed`` keys;
- ``[{method}_]vit_{size}_patch{p}_{img}``: a size from :data:`CPU_SIZES` (training-only, for CPU runs) or from the
  sslzoo registry (tiny, small, base); the ViT details (qkv bias, LayerNorm eps, position embedding, ViT-S head
  count) come from the method named in the prefix, else from ``method=``, as the sslzoo registry records them for
  the methods' official models;
- any other name: :func:`sslzoo.create_model` (registry names, timm names, ``local-dir:``).

The methods' initialisations (:func:`init_backbone`) differ and are part of the recipe: ``timm`` (timm's default,
DINO), ``mocov3`` (MoCo v3's xavier-uniform with the split-fan qkv rule, uniform patch embedding, cls N(0, 1e-6);
PatchMix), ``pytorch`` (PyTorch's default layer init plus trunc-normal(0.02) cls and position: the APS model).
"""

from __future__ import annotations

import copy
import math
import re
from typing import Any

import torch
from timm.layers import trunc_normal_
from timm.models.vision_transformer import VisionTransformer
from torch import nn

import sslzoo
from sslzoo import registry
from sslzoo.errors import SslzooError
from sslzoo.vit import build_vit

# Training-only sizes for CPU runs and tests (not published architectures).
# ``micro`` is the sslzoo registry's zoo size (published at patch 8); ``pico`` is for tests only.
CPU_SIZES: dict[str, registry.Size] = {
    s.name: s for s in (registry.Size("pico", "p", embed_dim=64, depth=2, num_heads=2), registry.MICRO)
}
INIT_STYLES = ("timm", "mocov3", "pytorch")
_NAME = re.compile(r"^(?:(?P<method>[a-z0-9]+)_)?vit_(?P<size>[a-z]+)_patch(?P<patch>\d+)_(?P<img>\d+)$")


class BackboneError(SslzooError, ValueError):
    """An architecture that training cannot build."""


def _from_name(name: str, method: str | None, kwargs: dict[str, Any]) -> VisionTransformer | None:
    match = _NAME.match(name)
    if match is None:
        return None
    size = CPU_SIZES.get(match["size"]) or registry.SIZES.get(match["size"])
    if size is None:
        raise BackboneError(f"unknown ViT size {match['size']!r} in {name!r}; use one of "
                            f"{sorted(CPU_SIZES) + sorted(registry.SIZES)}.")
    method = match["method"] or method
    # the registry's rule for a method's official ViT; a method the registry does not know gets timm's plain ViT
    args, eps, pos = registry.vit_args(method if method in registry.METHODS else None, size,
                                       patch_size=int(match["patch"]), img_size=int(match["img"]))
    args = dict(args, num_classes=0)
    args.update(kwargs)
    return build_vit(args, norm_eps=eps, pos_embed=pos)


def build_backbone(arch: str | dict[str, Any], *, method: str | None = None, init: str = "timm",
                   **kwargs: Any) -> VisionTransformer:
    """A randomly initialised ViT backbone (no classifier head) for pre-training.

    Args:
        arch: a dict of ``VisionTransformer`` arguments, a ``[method_]vit_{size}_patch{p}_{img}`` name or any
            name :func:`sslzoo.create_model` knows.
        method: whose ViT details (qkv bias, eps, position embedding) a method-less name takes.
        init: ``timm``, ``mocov3`` or ``pytorch`` (see the module docstring).
        **kwargs: further ``VisionTransformer`` arguments (``drop_path_rate``, ``dynamic_img_size``).
    """
    if isinstance(arch, dict):
        args = dict(arch)
        eps, pos = args.pop("norm_eps", 1e-6), args.pop("pos_embed", "learn")
        args.setdefault("num_classes", 0)
        model = build_vit(dict(args, **kwargs), norm_eps=eps, pos_embed=pos)
    else:
        model = _from_name(arch, method, kwargs) or sslzoo.create_model(arch, num_classes=0, **kwargs)
    if not isinstance(model, VisionTransformer):
        raise BackboneError(f"{arch!r} is not a timm VisionTransformer; training needs one.")
    init_backbone(model, init)
    return model


def init_backbone(vit: VisionTransformer, style: str) -> None:
    """Re-initialise ``vit`` the way a method's official code does (in place)."""
    if style not in INIT_STYLES:
        raise BackboneError(f"backbone init must be one of {INIT_STYLES}, got {style!r}.")
    if style == "timm":
        return
    for name, module in vit.named_modules():
        if style == "pytorch" and isinstance(module, (nn.Linear, nn.LayerNorm, nn.Conv2d)):
            module.reset_parameters()
        elif style == "mocov3" and isinstance(module, nn.Linear):
            if name.endswith("qkv"):  # fan-in plus a third of the fan-out: q, k and v are separate maps
                bound = math.sqrt(6.0 / (module.weight.shape[0] // 3 + module.weight.shape[1]))
                nn.init.uniform_(module.weight, -bound, bound)
            else:
                nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    proj = vit.patch_embed.proj
    if style == "mocov3":
        bound = math.sqrt(6.0 / (3 * proj.kernel_size[0] * proj.kernel_size[1] + proj.out_channels))
        nn.init.uniform_(proj.weight, -bound, bound)
        nn.init.zeros_(proj.bias)
        nn.init.normal_(vit.cls_token, std=1e-6)
    else:
        trunc_normal_(vit.cls_token, std=0.02)
        if vit.pos_embed is not None and vit.pos_embed.requires_grad:
            trunc_normal_(vit.pos_embed, std=0.02)


def feature_dim(vit: VisionTransformer) -> int:
    """Width of the pooled features the heads take."""
    return int(vit.num_features)


@torch.no_grad()
def copy_frozen(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` without gradients (momentum encoder, teacher)."""
    twin = copy.deepcopy(module)
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin
