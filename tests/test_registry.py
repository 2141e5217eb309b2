import json

import pytest
import torch

import sslzoo
from sslzoo import registry
from sslzoo.errors import UnknownModelError
from sslzoo.vit import sincos_pos_embed


# The official models' details, written out from METHODS.md (not read from the registry, so a wrong registry value
# fails): qkv bias, LayerNorm eps, position embedding, ViT-S heads. ContrastiveCrop runs on MoCo v3's ViT here.
OFFICIAL = {
    "aps": (False, 1e-5, "learn_no_cls", 6),  # METHODS.md 1: custom ViT, qkv bias off, eps 1e-5, no CLS position
    "patchmix": (True, 1e-6, "learn", 12),  # METHODS.md 2: timm ViT, learned position with a CLS slot, 12 heads
    "ccrop": (True, 1e-6, "sincos", 12),
    "adclr": (True, 1e-6, "sincos", 6),  # METHODS.md 4: DINO/iBOT ViT with fixed sin-cos, 6 heads
    "mocov3": (True, 1e-6, "sincos", 12),
    "dino": (True, 1e-6, "learn", 6),
}
SIZE_NAMES = {"t": "tiny", "s": "small", "b": "base"}
SIZES = {"t": (192, 12, 3), "s": (384, 12, None), "b": (768, 12, 12)}  # width, depth, heads (None: the method's ViT-S)


@pytest.mark.parametrize("alias", sorted(registry.ALIASES))
def test_every_alias_builds_the_architecture_it_names(alias):
    method, _, short = alias.split("_")
    qkv_bias, eps, pos_embed, small_heads = OFFICIAL[method]
    width, depth, heads = SIZES[short]
    heads = heads or small_heads
    model = sslzoo.create_model(alias)
    assert model.embed_dim == width
    assert len(model.blocks) == depth
    assert model.blocks[0].attn.num_heads == heads
    assert model.patch_embed.patch_size == (2, 2) and model.patch_embed.img_size == (32, 32)
    assert (model.blocks[0].attn.qkv.bias is not None) == qkv_bias
    assert model.norm.eps == eps and model.blocks[3].norm1.eps == eps
    assert model.num_classes == 0
    assert model.sslzoo_cfg["method"] == method
    assert model.sslzoo_cfg["architecture"] == f"{method}_vit_{SIZE_NAMES[short]}_patch2_32"
    n = model.patch_embed.num_patches
    if pos_embed == "learn_no_cls":
        assert model.no_embed_class and model.pos_embed.shape == (1, n, width)
    else:
        assert model.pos_embed.shape == (1, n + 1, width)
    if pos_embed == "sincos":
        assert not model.pos_embed.requires_grad
        assert torch.equal(model.pos_embed, sincos_pos_embed((16, 16), width))
    else:
        assert model.pos_embed.requires_grad
    out = model.eval()(torch.randn(1, 3, 32, 32)) if short == "t" else None
    assert out is None or out.shape == (1, width)


def test_names_follow_the_convention_and_cover_every_method_size_and_resolution():
    names = sslzoo.list_models()
    assert names == sorted(names)
    # the papers' sizes at every resolution, plus the zoo's micro ViT/8 for every method
    assert len(names) == len(registry.METHODS) * (len(registry.SIZES) * len(registry.RESOLUTIONS) + 1)
    for expected in ("aps_vit_tiny_patch2_32", "aps_vit_base_patch16_224", "patchmix_vit_small_patch4_32",
                     "ccrop_vit_base_patch2_32", "adclr_vit_small_patch16_224", "dino_vit_tiny_patch4_32"):
        assert expected in names


def test_list_models_wildcards_and_aliases():
    assert sslzoo.list_models("aps_*_patch16_224") == [
        "aps_vit_base_patch16_224", "aps_vit_small_patch16_224", "aps_vit_tiny_patch16_224"]
    assert sslzoo.list_models(["dino_vit_tiny*", "mocov3_vit_tiny_patch2*"]) == [
        "dino_vit_tiny_patch16_224", "dino_vit_tiny_patch2_32", "dino_vit_tiny_patch4_32", "dino_vit_tiny_patch8_224",
        "mocov3_vit_tiny_patch2_32"]
    assert "aps_vit_t" not in sslzoo.list_models()
    assert "aps_vit_t" in sslzoo.list_models(include_aliases=True)
    assert sslzoo.list_models("nothing*") == []


def test_list_models_pretrained_lists_tags(monkeypatch):
    w = registry.Weights(tag="cifar10", description="d", pretrain_data="CIFAR-10")
    monkeypatch.setattr(registry, "WEIGHTS", {"aps_vit_tiny_patch2_32": (w,)})
    assert sslzoo.list_models(pretrained=True) == ["aps_vit_tiny_patch2_32.cifar10"]
    assert sslzoo.list_models("dino*", pretrained=True) == []
    # the alias now points at the default (first) tag
    assert registry.resolve("aps_vit_t").full_name == "aps_vit_tiny_patch2_32.cifar10"


@pytest.mark.parametrize("typo, expected", [
    ("aps_vit_tiny_patch2_23", "aps_vit_tiny_patch2_32"),
    ("aps_vit_bb", "aps_vit_b"),
    ("patchmix_vit_smal_patch2_32", "patchmix_vit_small_patch2_32"),
    ("dino_vit_s", None),
])
def test_unknown_names_suggest_close_names(typo, expected):
    if expected is None:  # a valid alias resolves
        assert registry.resolve(typo).architecture.name == "dino_vit_small_patch2_32"
        return
    with pytest.raises(UnknownModelError) as e:
        sslzoo.create_model(typo)
    assert expected in str(e.value)
    assert "sslzoo list" in str(e.value)


def test_unknown_tag_lists_the_known_tags(monkeypatch):
    w = registry.Weights(tag="cifar10", description="d", pretrain_data="CIFAR-10")
    monkeypatch.setitem(registry.WEIGHTS, "aps_vit_tiny_patch2_32", (w,))
    with pytest.raises(UnknownModelError, match=r"aps_vit_tiny_patch2_32\.cifar10"):
        registry.resolve("aps_vit_tiny_patch2_32.in1k")


def test_model_info_is_json_and_describes_the_method():
    info = sslzoo.model_info("patchmix_vit_s")
    json.dumps(info)
    assert info["architecture"] == "patchmix_vit_small_patch2_32"
    assert info["aliases"] == ["patchmix_vit_s"]
    assert info["model_args"]["num_heads"] == 12  # PatchMix/MoCo v3 ViT-S uses 12 heads
    assert info["method"]["release"].endswith("visresearch/PatchMix")
    assert info["tags"] == ["authors_cifar10", "authors_cifar100"]
    assert info["weights"]["tag"] == "authors_cifar10"  # the default tag is described
