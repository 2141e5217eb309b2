"""DINO and ADCLR/PQCL training checkpoints -> sslzoo, against a re-implementation of their ViT (METHODS.md 4.2, 4.5)."""

from __future__ import annotations

import argparse
import json
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import torch
from timm.models.vision_transformer import Block
from torch import nn

from sslzoo import files
from sslzoo.weights import local_hubs
from sslzoo.weights.convert import convert, convert_file

from .upstream import assert_same_features, images, perturb, relative_error


def mae_sincos_table(dim: int, grid: int) -> torch.Tensor:
    """The fixed 2-D sin-cos table of MAE/iBOT-style code (numpy, float64, w first), with a zero class row."""

    def one_axis(d: int, pos: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    coords = np.stack(np.meshgrid(np.arange(grid, dtype=np.float32), np.arange(grid, dtype=np.float32)), axis=0)
    table = np.concatenate([one_axis(dim // 2, coords[0]), one_axis(dim // 2, coords[1])], axis=1)
    return torch.from_numpy(np.concatenate([np.zeros((1, dim)), table], axis=0)).float()[None]


class DinoViT(nn.Module):
    """DINO's ViT (``vision_transformer.py``), and PQCL's when ``adclr``: a fixed sin-cos table, plus the modules the
    trained backbone never runs (``masked_embed``, ``query_block``, a top-level ``norm2``)."""

    def __init__(self, *, img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, adclr=False):
        super().__init__()
        grid = img_size // patch_size
        ln = partial(nn.LayerNorm, eps=1e-6)
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, embed_dim, patch_size, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        table = mae_sincos_table(embed_dim, grid) if adclr else torch.zeros(1, 1 + grid * grid, embed_dim)
        self.pos_embed = nn.Parameter(table, requires_grad=not adclr)
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads, qkv_bias=True, norm_layer=ln) for _ in range(depth)])
        self.norm = ln(embed_dim)
        if adclr:
            self.masked_embed = nn.Parameter(torch.zeros(1, embed_dim))
            self.query_block = Block(embed_dim, num_heads, qkv_bias=True, norm_layer=ln)
            self.norm2 = ln(embed_dim)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 0]


class DinoHead(nn.Module):
    """The DINO/iBOT head: MLP with GELU, then a weight-normed last layer (``last_layer.weight_g/v``)."""

    def __init__(self, in_dim: int, out_dim: int = 32):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, 48), nn.GELU(), nn.Linear(48, 48), nn.GELU(), nn.Linear(48, 16))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # the old weight_norm gives the key names DINO saved
            self.last_layer = nn.utils.weight_norm(nn.Linear(16, out_dim, bias=False))


class MultiCropWrapper(nn.Module):
    def __init__(self, backbone: DinoViT, head: DinoHead):
        super().__init__()
        self.backbone, self.head = backbone, head


def dino_checkpoint(tmp_path: Path, *, adclr: bool = True, seed: int = 0, **vit_args) -> tuple[Path, dict[str, MultiCropWrapper]]:
    """A DINO/PQCL training checkpoint: teacher, DDP-wrapped student, optimizer, epoch, args, the loss's centers."""
    torch.manual_seed(seed)
    parts = {}
    for i, part in enumerate(("teacher", "student")):
        backbone = DinoViT(adclr=adclr, **vit_args)
        parts[part] = perturb(MultiCropWrapper(backbone, DinoHead(backbone.norm.normalized_shape[0])), seed + i).eval()
    loss_key = "pqcl_loss" if adclr else "dino_loss"
    ckpt = {
        "student": {f"module.{k}": v for k, v in parts["student"].state_dict().items()},
        "teacher": parts["teacher"].state_dict(),
        "optimizer": {"state": {}, "param_groups": [{"lr": 5e-4, "params": [0, 1]}]},
        "epoch": 100,
        "args": argparse.Namespace(arch="pos_small", patch_size=8, out_dim=32, local_crops_scale=(0.05, 0.25)),
        loss_key: {"center": torch.randn(1, 32), "center2": torch.randn(1, 1, 32)},
    }
    path = tmp_path / f"checkpoint_{loss_key}_{seed}.pth"
    torch.save(ckpt, path)
    return path, parts


def test_adclr_teacher_gives_the_upstream_features(tmp_path):
    path, parts = dino_checkpoint(tmp_path)
    out = convert_file(path, tmp_path / "out", num_heads=4)
    assert_same_features(out, parts["teacher"].backbone.features, images())

    config = json.loads((out / "config.json").read_text())
    assert config["sslzoo"]["converted_from"]["layout"] == "adclr" and config["sslzoo"]["method"] == "adclr"
    assert config["sslzoo"]["pos_embed"] == "sincos" and config["model_args"]["qkv_bias"] is True
    card = (out / "README.md").read_text()
    assert "masked_embed, norm2, query_block" in card and "sin-cos" in card
    full = files.load_checkpoint(out / local_hubs.FULL_WEIGHTS_NAME)
    for key in ("teacher.head.last_layer.weight_g", "student.module.backbone.query_block.attn.qkv.weight",
                "teacher.backbone.masked_embed", "pqcl_loss.center"):
        assert key in full, key


def test_student_on_request(tmp_path):
    path, parts = dino_checkpoint(tmp_path)
    converted = convert(path, "adclr", num_heads=4, encoder="student")
    x = images()
    with torch.no_grad():
        assert relative_error(converted.model(x), parts["student"].backbone.features(x)) <= 1e-5
        assert relative_error(parts["teacher"].backbone.features(x), parts["student"].backbone.features(x)) > 1e-3


def test_dino_checkpoint_with_learned_positions(tmp_path):
    path, parts = dino_checkpoint(tmp_path, adclr=False)
    out = convert_file(path, tmp_path / "out", layout="dino", num_heads=4)
    config = json.loads((out / "config.json").read_text())
    assert config["sslzoo"]["pos_embed"] == "learn" and config["sslzoo"]["converted_from"]["layout"] == "dino"
    assert_same_features(out, parts["teacher"].backbone.features, images())


def test_backbone_extracted_by_pqcl_script(tmp_path):
    # extract_backbone_weights.py strips the prefix but keeps the unused modules
    path, parts = dino_checkpoint(tmp_path)
    flat = tmp_path / "backbone.pth"
    torch.save(parts["teacher"].backbone.state_dict(), flat)
    converted = convert(flat, num_heads=4)
    assert converted.layout == "adclr" and converted.encoder == "backbone"
    x = images()
    with torch.no_grad():
        assert relative_error(converted.model(x), parts["teacher"].backbone.features(x)) <= 1e-5


def test_vit_s16_convention_six_heads(tmp_path):
    path, parts = dino_checkpoint(tmp_path, img_size=64, patch_size=16, embed_dim=384, depth=1, num_heads=6)
    out = convert_file(path, tmp_path / "out")
    config = json.loads((out / "config.json").read_text())
    assert (config["model_args"]["num_heads"], config["model_args"]["patch_size"], config["model_args"]["img_size"]) == (6, 16, 64)
    assert_same_features(out, parts["teacher"].backbone.features, images(64))
