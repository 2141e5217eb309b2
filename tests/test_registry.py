import json

import pytest
import torch

import sslzoo
from sslzoo import registry
from sslzoo.errors import UnknownModelError
from sslzoo.vit import sincos_pos_embed


@pytest.mark.parametrize("alias", sorted(registry.ALIASES))
def test_every_alias_builds_the_architecture_it_names(alias):
    method, _, short = alias.split("_")
    size = {s.short: s for s in registry.SIZES.values()}[short]
    m = registry.METHODS[method]
    model = sslzoo.create_model(alias)
    heads = m.small_heads if size.name == "small" else size.num_heads
    assert model.embed_dim == size.embed_dim
    assert len(model.blocks) == size.depth
    assert model.blocks[0].attn.num_heads == heads
    assert model.patch_embed.patch_size == (2, 2) and model.patch_embed.img_size == (32, 32)
    assert (model.blocks[0].attn.qkv.bias is not None) == m.qkv_bias
    assert model.norm.eps == m.norm_eps and model.blocks[3].norm1.eps == m.norm_eps
    assert model.num_classes == 0
    assert model.sslzoo_cfg["method"] == method
    assert model.sslzoo_cfg["architecture"] == f"{method}_vit_{size.name}_patch2_32"
    n = model.patch_embed.num_patches
    if m.pos_embed == "learn_no_cls":
        assert model.no_embed_class and model.pos_embed.shape == (1, n, size.embed_dim)
    else:
        assert model.pos_embed.shape == (1, n + 1, size.embed_dim)
    if m.pos_embed == "sincos":
        assert not model.pos_embed.requires_grad
        assert torch.equal(model.pos_embed, sincos_pos_embed((16, 16), size.embed_dim))
    else:
        assert model.pos_embed.requires_grad
    out = model.eval()(torch.randn(1, 3, 32, 32)) if size.name == "tiny" else None
    assert out is None or out.shape == (1, size.embed_dim)


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
        "dino_vit_tiny_patch16_224", "dino_vit_tiny_patch2_32", "dino_vit_tiny_patch4_32", "mocov3_vit_tiny_patch2_32"]
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
