"""Heads, frameworks and backbones: the shapes the papers give, EMA updates, and ADCLR's zero extra parameters."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from training.frameworks.backbone import BackboneError, build_backbone
from training.frameworks.dino import DINO
from training.frameworks.heads import DINOHead, DINOHeadSpec, MLPHead, MLPSpec
from training.frameworks.mocov3 import MoCoV3
from training.config import resolve
from training.methods import MethodConfigError, build_method
from training.views.presets import mocov3_cifar


def pico():
    return build_backbone("vit_pico_patch8_32", method="mocov3")


def _layers(head: nn.Module) -> list[str]:
    return [type(m).__name__ for m in head]


def test_mlp_heads_follow_the_papers() -> None:
    aps = MLPHead(192, MLPSpec(hidden=512, out=128, layers=3, last_bn=True))
    assert _layers(aps) == ["Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d"]
    assert all(m.bias is None for m in aps if isinstance(m, nn.Linear))
    assert aps[-1].affine is False and aps[1].affine is True
    assert [m.out_features for m in aps if isinstance(m, nn.Linear)] == [512, 512, 128]
    moco_pred = MLPHead(256, MLPSpec(hidden=4096, out=256, layers=2, last_bn=False))
    assert _layers(moco_pred) == ["Linear", "BatchNorm1d", "ReLU", "Linear"]


def test_dino_head() -> None:
    head = DINOHead(64, DINOHeadSpec(out_dim=50, hidden=32, bottleneck=16, norm_last_layer=True))
    assert head(torch.randn(3, 64)).shape == (3, 50)
    g = head.last_layer.parametrizations.weight.original0
    assert torch.all(g == 1) and not g.requires_grad
    assert [type(m).__name__ for m in head.mlp] == ["Linear", "GELU", "Linear", "GELU", "Linear"]
    # the prototypes have unit norm: logits of a unit bottleneck vector are cosines
    w = head.last_layer.weight
    assert torch.allclose(w.norm(dim=1), torch.ones(50), atol=1e-5)


def test_dino_head_with_bn_normalises_each_position_of_a_token_batch() -> None:
    spec = DINOHeadSpec(out_dim=50, hidden=32, bottleneck=16, use_bn=True)
    head = DINOHead(64, spec)
    assert [type(m).__name__ for m in head.mlp] == ["Linear", "BatchNorm1d", "GELU", "Linear", "BatchNorm1d", "GELU",
                                                    "Linear"]
    tokens = torch.randn(3, 5, 64) * 10 + 4  # ADCLR's (B, L, D) query tokens
    out = head(tokens)
    assert out.shape == (3, 5, 50)
    # the same 15 vectors as a flat batch give the same logits: BN statistics span batch and positions
    assert torch.allclose(out.reshape(15, 50), head(tokens.reshape(15, 64)), atol=1e-5)


def _perturb(*modules: nn.Module) -> None:
    """Move every parameter of the online ``modules`` away from its twin's, each by its own amount."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in modules:
            for p in module.parameters():
                p.add_(1.0 + torch.rand(p.shape, generator=g))


def _assert_ema_of_every_twin(fw: nn.Module, prefix: str, m: float, before: dict[str, torch.Tensor]) -> None:
    """Every parameter ``{prefix}X`` of ``fw`` is m * its old value + (1 - m) * the online parameter ``X``."""
    online = dict(fw.named_parameters())
    twins = [n for n in online if n.startswith(prefix)]
    assert twins and set(twins) == set(before)
    for name in twins:
        expected = m * before[name] + (1 - m) * online[name[len(prefix):]]
        torch.testing.assert_close(online[name], expected, atol=1e-6, rtol=0, msg=name)


def test_momentum_update_covers_encoder_and_projector_and_keys_have_no_grad() -> None:
    fw = MoCoV3(pico(), MLPSpec(32, 16), MLPSpec(32, 16, layers=2, last_bn=False), momentum_encoder=True)
    assert {n.split(".")[0] for n, _ in fw.named_parameters() if n.startswith("momentum_")} == {
        "momentum_backbone", "momentum_projector"}
    _perturb(fw.backbone, fw.projector, fw.predictor)
    before = {n: p.clone() for n, p in fw.named_parameters() if n.startswith("momentum_")}
    fw.update_ema(0.9)
    _assert_ema_of_every_twin(fw, "momentum_", 0.9, before)  # backbone -> momentum backbone, projector -> its twin
    keys = fw.keys(torch.randn(4, 3, 32, 32))
    assert not keys.requires_grad and keys.shape == (4, 16)
    plain = MoCoV3(pico(), MLPSpec(32, 16), MLPSpec(32, 16), momentum_encoder=False)
    assert plain.momentum_backbone is None and plain.eval_backbone() is plain.backbone and plain.ema_pairs() == []
    with pytest.raises(MethodConfigError, match="predictor"):
        MoCoV3(pico(), MLPSpec(32, 16), MLPSpec(32, 8), momentum_encoder=False)
    with pytest.raises(MethodConfigError, match="at least one layer"):
        MLPHead(8, MLPSpec(16, 8, layers=0))


def test_dino_teacher_ema_covers_backbone_and_head() -> None:
    fw = DINO(pico(), DINOHeadSpec(out_dim=20, hidden=16, bottleneck=8))
    assert all(not p.requires_grad for p in fw.teacher_backbone.parameters())
    _perturb(fw.backbone, fw.head)
    before = {n: p.clone() for n, p in fw.named_parameters() if n.startswith("teacher_")}
    assert any(n.startswith("teacher_backbone.") for n in before) and any(n.startswith("teacher_head.") for n in before)
    fw.update_ema(0.996)
    _assert_ema_of_every_twin(fw, "teacher_", 0.996, before)
    assert fw.eval_backbone() is fw.teacher_backbone


def test_backbone_names_take_the_methods_vit_details() -> None:
    aps = build_backbone("aps_vit_pico_patch8_32", init="pytorch")
    assert aps.blocks[0].attn.qkv.bias is None and aps.norm.eps == 1e-5 and aps.no_embed_class
    moco = build_backbone("vit_pico_patch8_32", method="mocov3", init="mocov3")
    assert not moco.pos_embed.requires_grad  # fixed sin-cos
    assert moco.cls_token.abs().max() < 1e-4  # N(0, 1e-6)
    assert moco.embed_dim == 64 and len(moco.blocks) == 2 and moco.patch_embed.patch_size == (8, 8)
    assert build_backbone({"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}).embed_dim == 32
    with pytest.raises(BackboneError, match="unknown ViT size"):
        build_backbone("vit_enormous_patch8_32")


def _cfg(method: str) -> dict:
    return {"method": method, "arch": "vit_pico_patch8_32", "init": "timm", "arch_kwargs": {},
            "framework": {"head": {"out_dim": 64, "hidden": 32, "bottleneck": 16}},
            "method_args": {"size": 16} if method == "adclr" else {}, "views": {"mean_std": "cifar"}}


def test_adclr_adds_no_parameters_to_dino() -> None:
    torch.manual_seed(0)
    dino = build_method(_cfg("dino"), num_images=10, total_epochs=1, device=torch.device("cpu"))
    adclr = build_method(_cfg("adclr"), num_images=10, total_epochs=1, device=torch.device("cpu"))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(adclr) == count(dino)
    assert [n for n, _ in adclr.named_parameters()] == [n for n, _ in dino.named_parameters()]


def test_adclr_loss_terms_and_teacher_modes() -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(4, 3, 32, 32, generator=g)
    for mode, use_bn in (("appended", False), ("standalone", False), ("appended", True)):
        cfg = _cfg("adclr")
        cfg["method_args"]["teacher_queries"] = mode
        cfg["framework"]["head"]["use_bn"] = use_bn
        torch.manual_seed(0)
        method = build_method(cfg, num_images=4, total_epochs=1, device=torch.device("cpu")).train()
        views = method.views(images, torch.arange(4), g, 0)
        assert views["queries"].shape == (4, 1, 3, 16, 16)
        from training.methods import StepContext

        terms = method(views, 0, StepContext(epoch=0, generator=g))
        assert torch.isfinite(terms["loss"])
        assert terms["loss"].item() == pytest.approx(terms["cls"].item() + terms["query"].item(), rel=1e-5)
        assert not method.framework.teacher_backbone.training  # no drop path in the teacher
        # a BN head normalises the teacher's own batch (official DINO); its running statistics are not EMA'd
        assert method.framework.teacher_head.training and not method.eval().framework.teacher_head.training


ZOO_METHODS = ("mocov3", "aps", "patchmix", "ccrop", "dino", "adclr")


def test_zoo_profiles_give_every_method_the_same_two_main_views() -> None:
    # issue 5: the zoo table must compare methods and nothing else, so the base augmentation is one for all six
    built = {m: build_method(resolve(["--method", m, "--profile", "zoo"]), num_images=10, total_epochs=1,
                             device=torch.device("cpu")) for m in ZOO_METHODS}
    main_views = {m: [p.cfg for p in method.pipelines[:2]] for m, method in built.items()}
    reference = main_views["mocov3"]
    assert reference[0] == replace(mocov3_cifar(), size=32)
    assert all(views == reference for views in main_views.values()), main_views
    for m in ("dino", "adclr"):
        local = built[m].pipelines[2].cfg
        assert (local.size, local.scale) == (16, (0.05, 0.4))
        assert replace(local, size=32, scale=reference[0].scale) == reference[0]  # the base's colour steps, no blur
    query = built["adclr"].pipelines[3].cfg
    assert (query.size, query.flip_p, query.blur_p, query.jitter) == (16, 0.0, 0.0, reference[0].jitter)


def test_adclr_zoo_profile_is_dino_zoo_profile_plus_the_query_term() -> None:
    # issue 29: the two zoo runs compare ADCLR with DINO, so every setting but the method and its query term is one
    dino, adclr = (resolve(["--method", m, "--profile", "zoo"]) for m in ("dino", "adclr"))
    differ = {"method", "recipe", "profiles", "arch", "method_args", "description", "overrides", "output"}
    assert {k: v for k, v in adclr.items() if k not in differ} == {k: v for k, v in dino.items() if k not in differ}
    assert adclr["arch"].replace("adclr_", "dino_") == dino["arch"]
    assert adclr["method_args"]["tokens"] == 2 and adclr["method_args"]["weight"] == 1.0
    assert (dino["epochs"], dino["arch_kwargs"]["drop_path_rate"], dino["framework"]["teacher_temp_final"]) == (
        48, 0.0, 0.02)


def test_views_base_refuses_unknown_names_and_a_conflicting_dino_global_scale() -> None:
    cfg = _cfg("dino")
    cfg["views"]["base"] = "imagenet_blur"
    with pytest.raises(MethodConfigError, match="unknown views.base 'imagenet_blur'; choose one of"):
        build_method(cfg, num_images=10, total_epochs=1, device=torch.device("cpu"))
    cfg = _cfg("dino")
    cfg["views"]["base"] = "mocov3_cifar"
    cfg["framework"]["global_scale"] = [0.4, 1.0]
    with pytest.raises(MethodConfigError, match=r"set framework.global_scale to \[0.2, 1.0\]"):
        build_method(cfg, num_images=10, total_epochs=1, device=torch.device("cpu"))
    cfg["framework"]["global_scale"] = [0.2, 1.0]
    dino = build_method(cfg, num_images=10, total_epochs=1, device=torch.device("cpu"))
    assert dino.pipelines[0].cfg.blur_p == 0.0 and dino.pipelines[1].cfg.solarize_p == 0.0


def test_every_method_has_a_recipe_and_the_cli_offers_every_method() -> None:
    from training.config import RECIPES, parser
    from training.methods import METHODS

    assert set(METHODS) == {p.stem for p in RECIPES.glob("*.yaml")}
    method_flag = next(a for a in parser()._actions if "--method" in a.option_strings)
    assert list(method_flag.choices) == list(METHODS)


def test_a_seventh_method_is_one_class_and_one_entry_in_methods(monkeypatch: pytest.MonkeyPatch) -> None:
    # the extension path: a Method subclass (here: MoCo v3 with a method_args section) and its line in METHODS
    from dataclasses import dataclass

    from training.methods import METHODS, MoCoV3Method

    @dataclass
    class Weighted:
        weight: float = 1.0

    class WeightedMoCo(MoCoV3Method):
        args_type = Weighted

        def __init__(self, framework, settings, args: Weighted) -> None:
            super().__init__(framework, settings)
            self.weight = args.weight

        def forward(self, inputs, substep, ctx):
            return {"loss": self.weight * super().forward(inputs, substep, ctx)["loss"]}

    monkeypatch.setitem(METHODS, "weighted", WeightedMoCo)
    cfg = resolve(["--recipe", "mocov3", "--method", "weighted", "--arch", "vit_pico_patch8_32",
                   "--set", "method_args.weight=0.5"])
    method = build_method(cfg, num_images=4, total_epochs=1, device=torch.device("cpu"))
    assert type(method) is WeightedMoCo and method.weight == 0.5 and len(method.pipelines) == 2
    cfg["method_args"] = {"wieght": 1}
    with pytest.raises(MethodConfigError, match="unknown method_args setting"):
        build_method(cfg, num_images=4, total_epochs=1, device=torch.device("cpu"))


def test_base_framework_applies_to_contrastive_crop_only() -> None:
    cfg = _cfg("ccrop")
    cfg.update(base="dino", framework={"head": {"out_dim": 64, "hidden": 32, "bottleneck": 16}})
    method = build_method(cfg, num_images=10, total_epochs=1, device=torch.device("cpu"))
    assert type(method).__name__ == "CCropDINOMethod" and method.crops.bank.boxes.shape == (10, 4)
    assert method.extra_state()["crops"]["updates"] == 0
    cfg = _cfg("aps")
    cfg["base"] = "dino"
    with pytest.raises(MethodConfigError, match="only a plug-in method"):
        build_method(cfg, num_images=10, total_epochs=1, device=torch.device("cpu"))
