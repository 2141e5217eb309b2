"""sslzoo's models as timm's own: the registry, features_only, in_chans with weights, overlays, plain timm folders.

The contract tests put every registered architecture (one per method, size and resolution family) through the
generic checks timm applies to its models (forward shape, backward, forward_intermediates, features_only with both
wrappers, torchscript), written here against timm's public API.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import timm
import torch
from safetensors.torch import save_file

import sslzoo
from sslzoo import registry

pytestmark = pytest.mark.usefixtures("isolated_hub")
ZOO = "aps_vit_micro_patch8_32.cifar10"
# one architecture per (method, resolution): the contract is the same at every width
CONTRACT = sorted(name for name in registry.ARCHITECTURES
                  if name.endswith(("_micro_patch8_32", "_tiny_patch4_32", "_tiny_patch16_224")))


@pytest.fixture
def shipped_zoo(monkeypatch):
    from sslzoo.weights import local_hubs

    monkeypatch.setattr(local_hubs, "SHIPPED_HUB", registry.ZOO_INDEX.parent)


def test_every_sslzoo_name_and_tag_is_in_timms_registry(shipped_zoo) -> None:
    assert timm.is_model("aps_vit_micro_patch8_32") and timm.is_model("dino_vit_small_patch16_224")
    assert ZOO in timm.list_models("aps_*", pretrained=True)
    assert "dino_vit_small_patch16_224.authors_in1k" in timm.list_models("dino_*", pretrained=True)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    ours, theirs = sslzoo.create_model(ZOO, pretrained=True).eval(), timm.create_model(ZOO, pretrained=True).eval()
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))
    cfg = timm.data.resolve_model_data_config(theirs)
    assert cfg["input_size"] == (3, 32, 32) and cfg["mean"] == ours.pretrained_cfg["mean"]
    assert timm.get_pretrained_cfg(ZOO).to_dict()["license"] == ours.pretrained_cfg["license"]


@pytest.mark.parametrize("first", ["sslzoo.vit", "sslzoo.pretrained_cfg", "sslzoo.files", "sslzoo.models"])
def test_the_registration_works_whichever_sslzoo_module_imports_timm_first(first: str) -> None:
    """The hook runs when timm's import ends, maybe inside a half-initialised sslzoo module: it must not need one."""
    probe = f"import {first}, timm; print(timm.is_model('aps_vit_micro_patch8_32'))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "True", out.stderr[-2000:]


def test_the_registration_waits_for_timm_and_keeps_import_sslzoo_torch_free() -> None:
    probe = ("import sys, sslzoo; assert 'torch' not in sys.modules and 'timm' not in sys.modules;"
             "import timm; print(timm.is_model('adclr_vit_micro_patch8_32'))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "True", out.stderr


@pytest.mark.parametrize("feature_cls", ["getter", "hook"])
def test_features_only_with_out_indices(shipped_zoo, feature_cls: str) -> None:
    model = sslzoo.create_model(ZOO, pretrained=True, features_only=True, out_indices=(1, 3), feature_cls=feature_cls)
    feats = model(torch.randn(2, 3, 32, 32))
    # the getter gives NCHW patch maps (forward_intermediates); the hook the blocks' token sequences, as in timm
    shape = (2, 128, 4, 4) if feature_cls == "getter" else (2, 17, 128)
    assert [tuple(f.shape) for f in feats] == [shape, shape]
    assert model.feature_info.channels() == [128, 128] and model.feature_info.reduction() == [8, 8]
    via_timm = timm.create_model(ZOO, pretrained=True, features_only=True, out_indices=(3,))
    with torch.no_grad():
        x = torch.randn(1, 3, 32, 32)
        assert torch.equal(via_timm(x)[0], sslzoo.create_model(ZOO, pretrained=True, features_only=True,
                                                               out_indices=(3,))(x)[0])


@pytest.mark.parametrize("in_chans", [1, 4])
def test_pretrained_weights_with_other_input_channels(shipped_zoo, in_chans: int) -> None:
    base = sslzoo.create_model(ZOO, pretrained=True).eval()
    model = sslzoo.create_model(ZOO, pretrained=True, in_chans=in_chans).eval()
    assert model.patch_embed.proj.weight.shape[1] == in_chans
    if in_chans == 1:  # timm's rule: the RGB filters summed, so a gray image equals its RGB copy
        gray = torch.rand(2, 1, 32, 32)
        with torch.no_grad():
            torch.testing.assert_close(model(gray), base(gray.expand(-1, 3, -1, -1)), atol=1e-5, rtol=1e-5)
    assert timm.create_model(ZOO, pretrained=True, in_chans=in_chans).patch_embed.proj.in_channels == in_chans


def test_pretrained_cfg_overlay_is_applied(shipped_zoo) -> None:
    overlay = dict(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), crop_pct=0.9)
    model = sslzoo.create_model(ZOO, pretrained=True, pretrained_cfg_overlay=overlay)
    assert {k: model.pretrained_cfg[k] for k in overlay} == overlay
    via_timm = timm.create_model(ZOO, pretrained=True, pretrained_cfg_overlay=overlay)
    assert timm.data.resolve_model_data_config(via_timm)["mean"] == (0.5, 0.5, 0.5)


def test_a_plain_timm_hub_folder_is_built_by_timm(tmp_path) -> None:
    """A repository timm wrote: config.json with ``architecture`` and ``pretrained_cfg``, no sslzoo model_args."""
    vit = timm.create_model("vit_tiny_patch16_224", num_classes=0, img_size=64)
    repo = tmp_path / "hf" / "models--someone--tiny-vit"
    commit = "fedcba9876543210fedcba9876543210fedcba98"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    save_file(vit.state_dict(), snap / "model.safetensors")
    (snap / "config.json").write_text(json.dumps({"architecture": "vit_tiny_patch16_224", "num_classes": 0,
                                                  "pretrained_cfg": {"input_size": [3, 64, 64], "mean": [0.5] * 3,
                                                                     "std": [0.5] * 3, "num_classes": 0}}))
    model = sslzoo.create_model("hf-hub:someone/tiny-vit", img_size=64).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), vit.eval()(x))


@pytest.mark.parametrize("arch", CONTRACT)
def test_timms_generic_model_checks(arch: str) -> None:
    model = timm.create_model(arch, num_classes=5).eval()
    size = model.pretrained_cfg["input_size"][-1]
    x = torch.randn(2, 3, size, size)
    out = model(x)
    assert out.shape == (2, 5)
    model.train()
    model(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)  # nothing disconnected
    model.eval()
    final, inter = model.forward_intermediates(x)
    assert len(inter) == len(model.blocks) and final.shape[0] == 2
    feats = timm.create_model(arch, features_only=True, out_indices=(-1,))(x)
    assert feats[0].shape[:2] == (2, model.embed_dim)
    scripted = torch.jit.script(model)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x))
