"""APS release -> sslzoo, checked against a re-implementation of the authors' custom ViT (METHODS.md 1.3, 1.8)."""

from __future__ import annotations

import json
import os
from functools import partial
from pathlib import Path
from typing import Optional

import pytest
import timm
import torch
from timm.models.vision_transformer import Block
from torch import nn

from sslzoo import cli, files
from sslzoo.weights import local_hubs
from sslzoo.weights.convert import convert, convert_file
from sslzoo.errors import CheckpointFormatError, UnsafeCheckpointError

from .upstream import assert_same_features, build_mlp, images, perturb, relative_error, sslzoo_features

MARKER_ENV = "SSLZOO_TEST_UNPICKLE_MARKER"


class ApsVit(nn.Module):
    """The APS ViT: timm Blocks with no qkv bias and LayerNorm eps 1e-5, a sequence-first (N, 1, D) position table
    that the class token does not get, ``fc`` on the class token (projector in pre-training, classifier after)."""

    def __init__(self, *, image_size=32, patch_size=8, emb_dim=64, num_layer=2, num_head=4, fc: Optional[nn.Module] = None):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, emb_dim))
        self.pos_embedding = nn.Parameter(torch.zeros((image_size // patch_size) ** 2, 1, emb_dim))
        self.patchify = nn.Conv2d(3, emb_dim, patch_size, patch_size)
        ln = partial(nn.LayerNorm, eps=1e-5)
        self.transformer = nn.Sequential(*[Block(emb_dim, num_head, qkv_bias=False, norm_layer=ln) for _ in range(num_layer)])
        self.layer_norm = ln(emb_dim)
        self.fc = fc

    def features(self, img: torch.Tensor) -> torch.Tensor:
        patches = self.patchify(img).flatten(2).permute(2, 0, 1)  # (N, B, D): sequence first
        patches = patches + self.pos_embedding
        tokens = torch.cat([self.cls_token.expand(-1, patches.shape[1], -1), patches], dim=0)
        return self.layer_norm(self.transformer(tokens.transpose(0, 1)))[:, 0]

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(img))


class ApsPretrain(nn.Module):
    """``ViTEncoderPredHead``: the encoder with a 3-layer projector as ``fc``, and a 3-layer predictor."""

    def __init__(self, **vit_args):
        super().__init__()
        width = vit_args.get("emb_dim", 64)
        self.base_encoder = ApsVit(**vit_args, fc=build_mlp(3, width, 32, 16))
        self.predictor = build_mlp(3, 16, 32, 16)


class PickledFinetunedVit(ApsVit):
    """Stands for the authors' fine-tuned files: ``torch.save(model)`` of a class only their code defines.

    Unpickling it runs ``__setstate__``, which leaves a marker: the proof that code from the file was executed.
    """

    def __setstate__(self, state):
        Path(os.environ[MARKER_ENV]).write_text("code from the checkpoint ran")
        super().__setstate__(state)


def aps_checkpoint(tmp_path: Path, *, seed: int = 0, **vit_args) -> tuple[Path, ApsPretrain]:
    """An APS pre-training file (a bare state dict, as ``model.module.state_dict()`` saves it) and its model."""
    torch.manual_seed(seed)
    model = perturb(ApsPretrain(**vit_args), seed).eval()
    path = tmp_path / f"aps_{seed}.pth"
    torch.save(model.state_dict(), path)
    return path, model


def test_pretrain_checkpoint_gives_the_upstream_features(tmp_path):
    path, model = aps_checkpoint(tmp_path)
    out = convert_file(path, tmp_path / "out", layout="aps", num_heads=4)
    x = images()
    assert_same_features(out, model.base_encoder.features, x)

    config = json.loads((out / "config.json").read_text())
    args = config["model_args"]
    assert (args["img_size"], args["patch_size"], args["embed_dim"], args["depth"], args["num_heads"]) == (32, 8, 64, 2, 4)
    assert args["qkv_bias"] is False and args["no_embed_class"] is True
    assert config["sslzoo"]["norm_eps"] == 1e-5 and config["sslzoo"]["pos_embed"] == "learn_no_cls"
    assert config["sslzoo"]["method"] == "aps"
    assert config["sslzoo"]["converted_from"]["sha256"] == files.sha256_file(path)
    assert config["pretrained_cfg"]["std"] == [0.2023, 0.1994, 0.2010]  # APS's pre-training statistics
    card = (out / "README.md").read_text()
    assert files.sha256_file(path) in card and "`aps`" in card and "LayerNorm eps" in card

    # the full checkpoint keeps the projector and predictor, under the authors' names
    full = files.load_checkpoint(out / local_hubs.FULL_WEIGHTS_NAME)
    assert full.keys() == model.state_dict().keys()
    assert torch.equal(full["predictor.0.weight"], model.predictor[0].weight)
    assert torch.equal(full["base_encoder.fc.7.running_var"], model.base_encoder.fc[7].running_var)

    # plain timm reads the same weights; only the eps it cannot be told differs (and the card says so)
    via_timm = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    assert via_timm.norm.eps == 1e-6
    with torch.no_grad():
        assert relative_error(via_timm(x), model.base_encoder.features(x)) < 1e-2


@pytest.mark.parametrize(("heads", "exact"), [(None, True), (12, False)])
def test_head_count_follows_the_aps_convention(tmp_path, heads, exact):
    # A ViT-S has 6 heads in APS; the tensors do not say so, the layout's convention does.
    path, model = aps_checkpoint(tmp_path, emb_dim=384, num_layer=1, num_head=6)
    converted = convert(path, "aps", num_heads=heads)
    assert converted.model.blocks[0].attn.num_heads == (heads or 6)
    x = images()
    with torch.no_grad():
        error = relative_error(converted.model(x), model.base_encoder.features(x))
    assert (error <= 1e-5) is exact
    assert any(("assumed from the aps convention" if heads is None else "given by the caller") in n for n in converted.notes)


def test_finetuned_state_dict_keeps_its_classifier(tmp_path):
    torch.manual_seed(1)
    model = perturb(ApsVit(fc=nn.Linear(64, 10)), 1).eval()
    path = tmp_path / "finetuned_state_dict.pth"
    torch.save(model.state_dict(), path)  # what the authors' best.pth holds once turned into a state dict
    out = convert_file(path, tmp_path / "out", num_heads=4)
    assert json.loads((out / "config.json").read_text())["num_classes"] == 10
    assert_same_features(out, model, images())
    assert not (out / local_hubs.FULL_WEIGHTS_NAME).exists()  # nothing beyond the model itself


def test_pickled_finetuned_model_is_refused_without_running_its_code(tmp_path, monkeypatch, capsys):
    marker = tmp_path / "marker"
    monkeypatch.setenv(MARKER_ENV, str(marker))
    path = tmp_path / "best.pth"
    torch.save(PickledFinetunedVit(fc=nn.Linear(64, 10)), path)

    with pytest.raises(UnsafeCheckpointError) as e:
        convert_file(path, tmp_path / "out", layout="aps")
    message = str(e.value)
    assert "torch.save(model)" in message and "state_dict()" in message and "never" in message
    assert cli.main(["convert", "--from", "aps", str(path), str(tmp_path / "out2")]) == cli.EXIT_USAGE
    assert "pickled" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "out").exists()

    torch.load(path, weights_only=False)  # the marker does work: unpickling the file would have run its code
    assert marker.exists()


def test_incomplete_checkpoint_is_refused(tmp_path):
    path, model = aps_checkpoint(tmp_path, num_layer=3)
    sd = {k: v for k, v in model.state_dict().items() if not k.startswith("base_encoder.transformer.1.")}
    torch.save(sd, path)
    with pytest.raises(CheckpointFormatError, match=r"lacks transformer blocks \[1\] of 3"):
        convert(path, "aps", num_heads=4)
    sd = {k: v for k, v in model.state_dict().items() if k != "base_encoder.transformer.2.attn.proj.weight"}
    torch.save(sd, path)
    with pytest.raises(CheckpointFormatError, match=r"does not form a timm ViT.*blocks\.2\.attn\.proj\.weight"):
        convert(path, "aps", num_heads=4)
    sd = dict(model.state_dict(), **{"base_encoder.pos_embedding": torch.zeros(1, 16, 64)})
    torch.save(sd, path)
    with pytest.raises(CheckpointFormatError, match=r"\(N, 1, D\)"):
        convert(path, "aps", num_heads=4)


def test_converted_folder_loads_as_its_registry_architecture(tmp_path):
    path, model = aps_checkpoint(tmp_path, emb_dim=192, num_layer=12, num_head=3, patch_size=2)
    out = convert_file(path, tmp_path / "out")
    config = json.loads((out / "config.json").read_text())
    assert config["sslzoo"]["name"] == "aps_vit_tiny_patch2_32"
    x = images(n=2)
    with torch.no_grad():
        ref = model.base_encoder.features(x)
    assert relative_error(sslzoo_features(out, x), ref) <= 1e-5
