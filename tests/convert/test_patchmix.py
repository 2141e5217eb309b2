"""PatchMix release -> sslzoo, checked against a re-implementation of the authors' model (METHODS.md 2.5, 2.9)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from sslzoo import files
from sslzoo.weights import local_hubs
from sslzoo.weights.convert import convert, convert_file
from sslzoo.errors import CheckpointFormatError

from .upstream import MocoStyleViT, assert_same_features, build_mlp, images, perturb, relative_error

PatchMixViT = MocoStyleViT  # PatchMix's ViT is MoCo v3's (learned position table with a class slot)


class PatchMixModel(nn.Module):
    """``ContrastMomentum_ViT`` (``ContrastNoMomentum_ViT`` without a momentum encoder, as for ViT-T): the encoders'
    ``head`` is the 3-layer projector, the predictor has 2 layers and a final affine-free BatchNorm."""

    def __init__(self, *, momentum: bool = True, **vit_args):
        super().__init__()
        self.base_encoder = PatchMixViT(**vit_args)
        self.base_encoder.head = build_mlp(3, self.base_encoder.embed_dim, 32, 16)
        if momentum:
            self.momentum_encoder = copy.deepcopy(self.base_encoder)
        self.predictor = build_mlp(2, 16, 32, 16)


def patchmix_checkpoint(
    tmp_path: Path, *, momentum: bool = True, seed: int = 0, ddp_prefix: bool = False, **vit_args
) -> tuple[Path, PatchMixModel]:
    """A PatchMix pre-training file: ``{"state_dict", "epoch", "arch", "optimizer", "scaler"}``."""
    torch.manual_seed(seed)
    args = dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4) | vit_args
    model = perturb(PatchMixModel(momentum=momentum, **args), seed).eval()
    sd = {("module." if ddp_prefix else "") + k: v for k, v in model.state_dict().items()}
    path = tmp_path / f"patchmix_{seed}.pth"
    torch.save({"state_dict": sd, "epoch": 800, "arch": "vit-small", "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3}]},
                "scaler": {"scale": 65536.0}}, path)
    return path, model


def test_momentum_encoder_gives_the_upstream_features(tmp_path):
    path, model = patchmix_checkpoint(tmp_path)
    out = convert_file(path, tmp_path / "out", layout="patchmix", num_heads=4)
    x = images()
    assert_same_features(out, model.momentum_encoder.features, x)
    with torch.no_grad():  # the two encoders really differ, so taking the wrong one would fail
        assert relative_error(model.base_encoder.features(x), model.momentum_encoder.features(x)) > 1e-3

    config = json.loads((out / "config.json").read_text())
    assert config["model_args"]["qkv_bias"] is True and config["model_args"]["no_embed_class"] is False
    assert config["sslzoo"]["norm_eps"] == 1e-6 and config["sslzoo"]["pos_embed"] == "learn"
    assert config["sslzoo"]["converted_from"]["encoder"] == "momentum_encoder"
    assert config["pretrained_cfg"]["crop_pct"] == 0.875  # Resize 36 -> CenterCrop 32, as the authors evaluate
    full = files.load_checkpoint(out / local_hubs.FULL_WEIGHTS_NAME)
    assert full.keys() == model.state_dict().keys()
    assert "predictor.4.running_mean" in full and "base_encoder.head.7.running_var" in full


def test_base_encoder_on_request_and_when_alone(tmp_path):
    path, model = patchmix_checkpoint(tmp_path)
    converted = convert(path, "patchmix", num_heads=4, encoder="base_encoder")
    x = images()
    with torch.no_grad():
        assert relative_error(converted.model(x), model.base_encoder.features(x)) <= 1e-5
    with pytest.raises(CheckpointFormatError, match="no 'teacher' encoder"):
        convert(path, "patchmix", num_heads=4, encoder="teacher")

    tiny_path, tiny = patchmix_checkpoint(tmp_path, momentum=False, seed=1)  # ViT-T is trained without one
    out = convert_file(tiny_path, tmp_path / "tiny", num_heads=4)
    assert_same_features(out, tiny.base_encoder.features, x)


def test_ddp_prefix_is_accepted(tmp_path):
    path, model = patchmix_checkpoint(tmp_path, ddp_prefix=True)
    converted = convert(path, num_heads=4)
    assert converted.layout == "patchmix"
    x = images()
    with torch.no_grad():
        assert relative_error(converted.model(x), model.momentum_encoder.features(x)) <= 1e-5


def test_vit_s_has_twelve_heads_in_this_layout(tmp_path):
    path, model = patchmix_checkpoint(tmp_path, embed_dim=384, depth=1, num_heads=12)
    out = convert_file(path, tmp_path / "out")
    assert json.loads((out / "config.json").read_text())["model_args"]["num_heads"] == 12
    assert "num_heads=12 assumed from the patchmix convention" in (out / "README.md").read_text()
    assert_same_features(out, model.momentum_encoder.features, images())
