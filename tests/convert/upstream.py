"""Pieces shared by the upstream re-implementations in this folder's tests, and the comparison they all make."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

import sslzoo

MAX_RELATIVE_ERROR = 1e-5


def build_mlp(num_layers: int, input_dim: int, mlp_dim: int, output_dim: int, last_bn: bool = True) -> nn.Sequential:
    """MoCo v3's ``_build_mlp`` (also APS's and PatchMix's): bias-free Linear, BN + ReLU between, optional final BN."""
    layers: list[nn.Module] = []
    for i in range(num_layers):
        dim1 = input_dim if i == 0 else mlp_dim
        dim2 = output_dim if i == num_layers - 1 else mlp_dim
        layers.append(nn.Linear(dim1, dim2, bias=False))
        if i < num_layers - 1:
            layers += [nn.BatchNorm1d(dim2), nn.ReLU(inplace=True)]
        elif last_bn:
            layers.append(nn.BatchNorm1d(dim2, affine=False))
    return nn.Sequential(*layers)


class MocoStyleViT(VisionTransformer):
    """MoCo v3's ``VisionTransformerMoCo``, which PatchMix's ``module/vits.py`` inherits: timm's ViT with qkv bias and
    LayerNorm eps 1e-6, whose forward adds the position table after prepending the class token."""

    def __init__(self, **kwargs):
        super().__init__(qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6), **kwargs)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 0]


def perturb(module: nn.Module, seed: int, scale: float = 0.05) -> nn.Module:
    """Make every trained parameter and float buffer distinct from its initialisation (and from other copies);
    frozen parameters, such as a fixed sin-cos position table, are left alone."""
    g = torch.Generator().manual_seed(seed)
    trained = [p for p in module.parameters() if p.requires_grad]
    with torch.no_grad():
        for t in trained + [b for b in module.buffers() if b.is_floating_point()]:
            t.add_(torch.randn(t.shape, generator=g) * scale)
    return module


def images(size: int = 32, n: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@torch.no_grad()
def sslzoo_features(folder: Path, x: torch.Tensor) -> torch.Tensor:
    """What the converted folder gives through sslzoo: the model's output (CLS after the final norm, or logits)."""
    return sslzoo.create_model(f"local-dir:{folder}").eval()(x)


@torch.no_grad()
def assert_same_features(folder: Path, upstream: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> None:
    ours, theirs = sslzoo_features(folder, x), upstream(x)
    assert ours.shape == theirs.shape
    assert relative_error(ours, theirs) <= MAX_RELATIVE_ERROR
