import importlib.util
from pathlib import Path

import torch

from sslzoo import registry

REPO_ROOT = Path(__file__).resolve().parents[1]


def _hubconf():
    spec = importlib.util.spec_from_file_location("hubconf_under_test", REPO_ROOT / "hubconf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hubconf_has_one_entry_per_alias_and_architecture():
    module = _hubconf()
    # the rule torch.hub.list applies: public callables of hubconf
    entries = {n for n in dir(module) if callable(getattr(module, n)) and not n.startswith("_")}
    assert entries == set(registry.ARCHITECTURES) | set(registry.ALIASES)
    assert "timm" in module.dependencies
    assert "sslzoo.create_model" in module.patchmix_vit_small_patch16_224.__doc__


def test_torch_hub_load_builds_the_named_model():
    model = torch.hub.load(str(REPO_ROOT), "aps_vit_t", source="local", pretrained=False)
    assert model.sslzoo_cfg["architecture"] == "aps_vit_tiny_patch2_32"
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 192)
