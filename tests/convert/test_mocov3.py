"""MoCo v3 ViT checkpoints -> sslzoo, against a re-implementation of MoCo v3's ``vits.py`` and ``builder.py``."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from torch import nn

from sslzoo.weights.convert import convert, convert_file
from sslzoo.vit import sincos_pos_embed

from .upstream import MocoStyleViT, assert_same_features, build_mlp, images, perturb, relative_error


def mocov3_sincos_table(grid: int, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """``build_2d_sincos_position_embedding`` of MoCo v3 (float32, ``meshgrid(grid_w, grid_h)`` with ij indexing)."""
    grid_w, grid_h = torch.meshgrid(torch.arange(grid, dtype=torch.float32), torch.arange(grid, dtype=torch.float32),
                                    indexing="ij")
    pos_dim = dim // 4
    omega = 1.0 / temperature ** (torch.arange(pos_dim, dtype=torch.float32) / pos_dim)
    out_w = torch.einsum("m,d->md", grid_w.flatten(), omega)
    out_h = torch.einsum("m,d->md", grid_h.flatten(), omega)
    table = torch.cat([out_w.sin(), out_w.cos(), out_h.sin(), out_h.cos()], dim=1)[None]
    return torch.cat([torch.zeros(1, 1, dim), table], dim=1)


class MocoViT(MocoStyleViT):
    """``VisionTransformerMoCo`` with its frozen 2-D sin-cos position table."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.pos_embed = nn.Parameter(mocov3_sincos_table(self.patch_embed.grid_size[0], self.embed_dim), requires_grad=False)


class MoCoV3(nn.Module):
    """``MoCo_ViT``: both encoders' ``head`` is the 3-layer projector; the predictor has 2 layers, no final BN."""

    def __init__(self, **vit_args):
        super().__init__()
        self.base_encoder = MocoViT(**vit_args)
        self.base_encoder.head = build_mlp(3, self.base_encoder.embed_dim, 32, 16)
        self.momentum_encoder = copy.deepcopy(self.base_encoder)
        self.predictor = build_mlp(2, 16, 32, 16, last_bn=False)


def mocov3_checkpoint(tmp_path: Path, *, seed: int = 0, **vit_args) -> tuple[Path, MoCoV3]:
    """``{"epoch", "arch", "state_dict", "optimizer"}`` with DDP's ``module.`` prefix, as ``main_moco.py`` saves."""
    torch.manual_seed(seed)
    args = dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4) | vit_args
    model = perturb(MoCoV3(**args), seed).eval()
    path = tmp_path / f"mocov3_{seed}.pth.tar"
    torch.save({"epoch": 300, "arch": "vit_small", "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()},
                "optimizer": {"state": {}, "param_groups": [{"lr": 1.5e-4}]}}, path)
    return path, model


def test_base_encoder_gives_the_upstream_features(tmp_path):
    path, model = mocov3_checkpoint(tmp_path)
    out = convert_file(path, tmp_path / "out", layout="mocov3", num_heads=4)
    assert_same_features(out, model.base_encoder.features, images())
    config = json.loads((out / "config.json").read_text())
    assert config["sslzoo"]["converted_from"]["encoder"] == "base_encoder"
    # MoCo v3's table has its row and column halves in the opposite order to sslzoo's: kept as stored, not "sincos"
    assert not torch.allclose(mocov3_sincos_table(4, 64), sincos_pos_embed((4, 4), 64), atol=1e-4)
    assert config["sslzoo"]["pos_embed"] == "learn"
    assert "MoCo v3's fixed 2-D sin-cos table" in (out / "README.md").read_text()


def test_momentum_encoder_on_request(tmp_path):
    path, model = mocov3_checkpoint(tmp_path)
    converted = convert(path, "mocov3", num_heads=4, encoder="momentum_encoder")
    x = images()
    with torch.no_grad():
        assert relative_error(converted.model(x), model.momentum_encoder.features(x)) <= 1e-5
        assert relative_error(model.base_encoder.features(x), model.momentum_encoder.features(x)) > 1e-3


def test_vit_s_has_twelve_heads(tmp_path):
    path, model = mocov3_checkpoint(tmp_path, img_size=64, patch_size=16, embed_dim=384, depth=1, num_heads=12)
    out = convert_file(path, tmp_path / "out")
    assert json.loads((out / "config.json").read_text())["model_args"]["num_heads"] == 12
    assert_same_features(out, model.base_encoder.features, images(64))
