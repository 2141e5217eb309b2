"""publish: a run folder becomes a hub folder that sslzoo and timm load, plus the full checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import sslzoo
from tests.training.test_pretrain import tiny_argv
from training import pretrain, publish
from training.config import resolve


@pytest.mark.parametrize("method", ["mocov3", "dino"])
def test_publish_writes_a_loadable_hub_folder(method: str, small_cifar, tmp_path: Path) -> None:
    tr = pretrain.train(resolve(tiny_argv(method, small_cifar, tmp_path / "run", steps=2)))
    assert publish.main([str(tr.run_dir), "--output", str(tmp_path / "hub"), "--name", f"{method}_test"]) == 0
    hub = tmp_path / "hub"
    assert {"model.safetensors", "config.json", "README.md", "full.safetensors"} <= {p.name for p in hub.iterdir()}
    model = sslzoo.create_model(f"local-dir:{hub}").eval()
    evaluated = tr.method.eval_backbone()  # momentum encoder (mocov3) or teacher (dino)
    for k, v in evaluated.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), evaluated.eval()(x), atol=1e-6)
    full = load_file(hub / "full.safetensors")
    twin = "framework.momentum_backbone.cls_token" if method == "mocov3" else "framework.teacher_backbone.cls_token"
    assert twin in full and torch.equal(full[twin], tr.method.state_dict()[twin])
    assert any(k.startswith("framework.predictor.") for k in full) == (method == "mocov3")
    card = (hub / "README.md").read_text()
    for needle in (f"| method | {method} |", "| seed | 0 |", "| recipe |", "| wall-clock (s) |", "| git revision |",
                   "| torch |", "| hardware |", "| epochs |", "| data |"):
        assert needle in card
    config = json.loads((hub / "config.json").read_text())
    assert config["sslzoo"]["name"] == f"{method}_test" and config["model_args"]["embed_dim"] == 64


def test_publish_needs_a_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert publish.main([str(tmp_path), "--output", str(tmp_path / "hub")]) == 2
    assert "not a finished training run" in capsys.readouterr().err
