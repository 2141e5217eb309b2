"""publish: a run folder becomes a hub folder that sslzoo and timm load, plus the full checkpoint."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml
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
    for needle in (f"| method | {method} |", "| seed | 0 |", "| recipe |", "| wall-clock of the training loop (s) |", "| git revision |",
                   "| torch |", "| hardware |", "| epochs |", "| data |"):
        assert needle in card
    config = json.loads((hub / "config.json").read_text())
    assert config["sslzoo"]["name"] == f"{method}_test" and config["model_args"]["embed_dim"] == 64


def test_publish_needs_a_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert publish.main([str(tmp_path), "--output", str(tmp_path / "hub")]) == 2
    assert "not a finished training run" in capsys.readouterr().err


def _shapes_folder(root: Path, per_class: int = 7) -> Path:
    """A tiny ImageFolder that is not CIFAR-10: 24 px JPEGs of three generated patterns."""
    from PIL import Image, ImageDraw

    gen = torch.Generator().manual_seed(0)
    for split, cls, count in [(s, c, n) for s, n in (("train", per_class), ("test", 3))
                              for c in ("discs", "bars", "noise")]:
        (root / split / cls).mkdir(parents=True)
        for i in range(count):
            colour = tuple(int(c) for c in torch.randint(0, 256, (3,), generator=gen))
            im = Image.new("RGB", (24, 24), (255 - colour[0], 128, colour[2]))
            draw = ImageDraw.Draw(im)
            if cls == "discs":
                draw.ellipse((2 + i, 3, 20, 21 - i), fill=colour)
            elif cls == "bars":
                draw.rectangle((i, 0, i + 6, 23), fill=colour)
            else:
                im = Image.fromarray(torch.randint(0, 256, (24, 24, 3), generator=gen, dtype=torch.uint8).numpy())
            im.save(root / split / cls / f"{cls}_{i}.jpg", quality=90)
    return root


def _table(card: str) -> dict[str, str]:
    rows = card.split("## Training run", 1)[1].split("\n## ", 1)[0]
    return {r.split(" | ")[0].strip("| "): r.split(" | ", 1)[1].rstrip(" |") for r in rows.splitlines()
            if r.startswith("| ") and not r.startswith("| field")}


def test_the_card_describes_the_run_not_the_recipe(small_cifar, tmp_path: Path) -> None:
    """A short APS run (quick profile, overridden) on 18 of 21 generated images: every fact of the card is the run's."""
    data = _shapes_folder(tmp_path / "shapes")
    argv = tiny_argv("aps", (data, small_cifar[1]), tmp_path / "run", steps=3)
    argv += ["--profile", "quick", "--batch-size", "8", "--train-limit", "18", "--seed", "3"]
    tr = pretrain.train(resolve(argv))
    assert publish.main([str(tr.run_dir), "--output", str(tmp_path / "hub")]) == 0
    card = (tmp_path / "hub" / "README.md").read_text()
    config = yaml.safe_load((tr.run_dir / "config.yaml").read_text())
    with open(tr.run_dir / "log.csv", newline="") as f:
        log = list(csv.DictReader(f))
    ckpt = torch.load(tr.run_dir / "checkpoint.pt", weights_only=True)
    rows = _table(card)
    assert rows["method"] == "aps" and rows["recipe"] == "aps" and rows["profile"] == "quick"
    for given in ("--arch vit_pico_patch8_32", "--steps 3", "--batch-size 8", "--train-limit 18", "--seed 3",
                  f"--data {data}", "--set optim.warmup_epochs=0", "--no-progress"):
        assert f"`{given}`" in rows["overrides"], given
    assert "--profile" not in rows["overrides"] and "--method" not in rows["overrides"]
    assert rows["architecture"].startswith("vit_pico_patch8_32") and "width 64, depth 2, patch 8, 32x32 px" in \
        rows["architecture"] and config["arch"] == "vit_pico_patch8_32"
    assert rows["data"] == str(data) == config["data"]
    assert rows["training images"] == "18 (a seeded subset: train_limit 18)" and len(tr.source) == 18
    assert rows["iterations"] == "3" == log[-1]["iteration"] and int(ckpt["iteration"]) == 3
    assert float(rows["epochs"]) == float(log[-1]["epoch"]) == 1.5  # 18 // 8 = 2 iterations an epoch
    assert rows["global batch"] == "8" and config["batch_size"] == 8
    substeps = int(log[-1]["step"]) // 3
    assert substeps > 1 and rows["optimizer steps"] == f"{3 * substeps} ({substeps} per iteration)"
    assert rows["last logged"] == (f"loss {float(log[-1]['loss']):.4f} at iteration 3; online kNN top-1 "
                                   f"{float(log[-1]['knn_top1']):.2f} % at iteration 3")
    assert rows["seed"] == "3" and rows["replaced unreadable images"] == "0" == log[-1]["replaced_images"]
    assert float(rows["wall-clock of the training loop (s)"]) == round(ckpt["wall_clock"], 1) >= \
        float(rows["of which in training steps (s)"]) == round(float(log[-1]["elapsed_s"]), 1)
    # the recipe's full budget (CIFAR-10, ViT-T/2, 1600 epochs, batch 512) only as "recipe: ..."
    description = card.split("\n# ", 1)[1].split("\n\n")[1]
    assert description.startswith("Pre-trained with `sslzoo pretrain` (aps, recipe aps, profile quick):")
    assert f"vit_pico_patch8_32 on 18 images of {data} for 3 iterations (1.5 epochs) at global batch 8." in description
    recipe_lines = [line for line in card.splitlines() if "CIFAR" in line or "1600" in line]
    assert recipe_lines and all(line.startswith("recipe: ") for line in recipe_lines), recipe_lines
    assert "python -m training" not in card and "datasets:" not in card.split("\n---", 1)[0]
