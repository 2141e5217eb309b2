"""Every recipe and profile parses, and every ImageNet profile builds its method and trains a step at 224 px.

The ImageNet profiles run at a shrunken width (one 32-wide block) and batch on a tiny folder of mixed-size JPEGs,
so that the test checks the recipe (views, crops, heads, schedules, method settings), not the machine.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import yaml

from tests.training.conftest import upscaled_copy
from training import pretrain
from training.config import RECIPES, ConfigError, resolve
from training.methods import METHODS

IMAGENET_PROFILES = ("imagenet_s16", "imagenet_b16")
SHRINK = ["--set", "arch_kwargs.embed_dim=32", "--set", "arch_kwargs.depth=1", "--set", "arch_kwargs.num_heads=2"]


@pytest.fixture(scope="module")
def folder_224(small_cifar, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return upscaled_copy(small_cifar[0], tmp_path_factory.mktemp("in224"), 224, 320, per_class=1)


def test_every_recipe_and_profile_resolves() -> None:
    for path in sorted(RECIPES.glob("*.yaml")):
        recipe = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert recipe["method"] in METHODS and recipe["description"].strip(), path.name
        for profile in [None, *recipe.get("profiles", {})]:
            argv = ["--recipe", path.stem, "--data", "/x"] + (["--profile", profile] if profile else [])
            cfg = resolve(argv)
            assert cfg["method"] == recipe["method"]
        assert set(IMAGENET_PROFILES) <= set(recipe["profiles"]), f"{path.name} lacks an ImageNet profile"


@pytest.mark.parametrize("profile", IMAGENET_PROFILES)
@pytest.mark.parametrize("method", sorted(METHODS))
def test_imagenet_profile_trains_a_step_at_224(method: str, profile: str, folder_224: Path, tmp_path: Path) -> None:
    size = "small" if profile.endswith("s16") else "base"
    argv = ["--method", method, "--profile", profile, "--data", str(folder_224), "--steps", "1", "--batch-size", "4",
            "--workers", "0", "--device", "cpu", "--no-progress", "--output", str(tmp_path / "run"),
            "--set", "log.knn_every_epochs=0", "--set", f"cache_dir={tmp_path / 'cache'}", *SHRINK]
    cfg = resolve(argv)
    assert cfg["arch"] == f"{method}_vit_{size}_patch16_224" and cfg["views"]["mean_std"] == "imagenet"
    tr = pretrain.train(cfg)
    assert tr.iteration == 1 and tr.source.mode == "stream"
    assert tr.method.image_size == 224
    assert all(p.cfg.size in (224, 96) for p in tr.method.pipelines)
    with open(tr.run_dir / "log.csv", newline="", encoding="utf-8") as f:
        assert math.isfinite(float(next(csv.DictReader(f))["loss"]))


def test_a_profile_without_data_asks_for_it() -> None:
    with pytest.raises(ConfigError, match="names no training data: pass --data"):
        resolve(["--method", "dino", "--profile", "imagenet_s16"])


# ADCLR's query side is set in patch tokens: the recipes' own architectures keep their pixel sizes, others follow.
ADCLR_QUERY_PX = {None: 12, "quick": 12, "zoo": 16, "imagenet_s16": 96, "imagenet_b16": 96}


@pytest.mark.parametrize("profile", list(ADCLR_QUERY_PX))
def test_adclr_profiles_keep_their_query_pixels(profile: str | None) -> None:
    import torch

    from training.methods import build_method

    argv = ["--method", "adclr", "--data", "/x", *SHRINK, "--set", "framework.head.out_dim=64",
            "--set", "framework.head.hidden=32", "--set", "framework.head.bottleneck=16"]
    cfg = resolve(argv + (["--profile", profile] if profile else []))
    method = build_method(cfg, num_images=1, total_epochs=1, device=torch.device("cpu"))
    (queries,) = [s for s in method.crop_specs() if s.name == "queries"]
    assert queries.size == ADCLR_QUERY_PX[profile] == method.pipelines[-1].cfg.size
    assert queries.size == cfg["method_args"]["tokens"] * method.framework.backbone.patch_embed.patch_size[0]


def test_adclr_quick_profile_trains_with_a_patch_16_architecture(small_cifar, tmp_path: Path) -> None:
    """The quick profile's 3-token queries are 48 px at patch 16 (12 px at its own patch 4)."""
    argv = ["--method", "adclr", "--profile", "quick", "--arch", "vit_pico_patch16_32", "--data", str(small_cifar[0]),
            "--steps", "1", "--batch-size", "8", "--workers", "0", "--device", "cpu", "--no-progress",
            "--output", str(tmp_path / "run"), "--set", "log.knn_every_epochs=0", "--set", f"cache_dir={small_cifar[1]}",
            "--set", "framework.head.out_dim=64", "--set", "framework.head.hidden=32",
            "--set", "framework.head.bottleneck=16"]
    tr = pretrain.train(resolve(argv))
    assert tr.iteration == 1 and [s.size for s in tr.method.crop_specs() if s.name == "queries"] == [48]
    with open(tr.run_dir / "log.csv", newline="", encoding="utf-8") as f:
        row = next(csv.DictReader(f))
    assert math.isfinite(float(row["loss"])) and float(row["query"]) > 0


def test_an_adclr_query_size_that_does_not_tile_is_one_line(small_cifar, tmp_path: Path, capsys) -> None:
    argv = ["--method", "adclr", "--profile", "quick", "--arch", "vit_pico_patch16_32", "--data", str(small_cifar[0]),
            "--set", f"cache_dir={small_cifar[1]}", "--set", "method_args.size=12", "--batch-size", "8",
            "--output", str(tmp_path / "run"), "--device", "cpu", "--no-progress"]
    assert pretrain.main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("sslzoo: ")]  # notices
    assert len(err) == 1 and err[0].startswith("sslzoo pretrain: error: ")
    err = err[0]
    assert "method_args.size 12 px does not tile into the ViT's 16-px patches" in err
    assert "method_args.tokens" in err
