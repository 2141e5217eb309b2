"""The fine-tuning protocol: end-to-end runs on a tiny real CIFAR-10 ImageFolder, resume, recipe, optimizer, errors."""

import argparse
import csv
import json
import zipfile
from pathlib import Path

import pytest
import timm
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

import sslzoo
from sslzoo import data as sslzoo_data, files
from sslzoo.data import ClassesError
from sslzoo.errors import SslzooError
from sslzoo.eval import finetune as ft
from sslzoo.eval.finetune import cli as finetune_cli, data as finetune_data, recipes as finetune_recipes
from sslzoo.eval.finetune import run as finetune_run
from sslzoo.vit import build_vit

SAMPLE_ZIP = sslzoo_data.SAMPLE_ARCHIVE
CLASSES = ("airplane", "automobile", "bird", "cat")
PER_CLASS = {"train": 12, "test": 4}
DEPTH = 2
# a quick run: 48 training images in batches of 8, two epochs, one of warm-up
RUN = dict(recipe="patchmix-cifar", epochs=2, batch_size=8, warmup_epochs=1, num_workers=0, progress=False, seed=3)


def _tiny_imagefolder(root: Path, classes=CLASSES, per_class=PER_CLASS) -> Path:
    """Real CIFAR-10 (JPEG q75) images from the sample shipped in the package, as a train/ test/ ImageFolder."""
    taken: dict[tuple[str, str], int] = {}
    with zipfile.ZipFile(SAMPLE_ZIP) as zf:
        for name in sorted(zf.namelist()):
            split, cls, _ = name.split("/")
            if cls in classes and taken.get((split, cls), 0) < per_class[split]:
                taken[(split, cls)] = taken.get((split, cls), 0) + 1
                (root / split / cls).mkdir(parents=True, exist_ok=True)
                (root / name).write_bytes(zf.read(name))
    return root


def _tiny_backbone(folder: Path) -> str:
    torch.manual_seed(0)
    model = build_vit(dict(img_size=32, patch_size=4, embed_dim=64, depth=DEPTH, num_heads=2))
    model.pretrained_cfg = dict(input_size=(3, 32, 32), crop_pct=1.0, interpolation="bicubic",
                                mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26))
    sslzoo.save_pretrained(model, folder)
    return f"local-dir:{folder}"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """On the shared 2-core machine, intra-op threads of tiny matmuls mostly wait for each other: 5-10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    mp = pytest.MonkeyPatch()
    mp.setenv("SSLZOO_CACHE", str(root / "cache"))  # the decoded-data cache stays in the test's folder
    mp.setenv("HF_HUB_OFFLINE", "1")
    yield dict(root=root, data=_tiny_imagefolder(root / "data"), backbone=_tiny_backbone(root / "backbone"))
    mp.undo()


@pytest.fixture(scope="module")
def finished(workspace):
    """An uninterrupted two-epoch run."""
    out = workspace["root"] / "run"
    results = ft.finetune(workspace["backbone"], workspace["data"], output=out, **RUN)
    return dict(results, output=out)


def _test_batch(data: Path, model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    split = sslzoo_data.decoded_split(data, "test")
    return sslzoo_data.eval_transform(model)(split.images), split.labels


def _logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


def test_two_epochs_write_a_hub_folder_that_loads_with_its_head(workspace, finished):
    out = finished["output"]
    for name in ("model.safetensors", "config.json", "README.md", "checkpoint.pt", "log.csv", "results.json"):
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    assert results["protocol"] == "finetune:patchmix-cifar"
    assert (results["epochs"], results["num_classes"], results["classes"]) == (2, 4, list(CLASSES))
    assert (results["train_images"], results["test_images"], results["steps_per_epoch"]) == (48, 16, 6)
    assert results["lr"] == pytest.approx(1e-3 * 8 / 256)  # the ViT-T base lr of PatchMix, scaled to batch 8
    with open(out / "log.csv") as f:
        log = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in log] == [1, 2]
    tops = [float(r["test_top1"]) for r in log]
    assert results["last_top1"] == tops[-1]
    assert results["best_top1"] == max(tops) and tops[results["best_epoch"] - 1] == max(tops)

    loaded = sslzoo.create_model(f"local-dir:{out}")
    assert loaded.num_classes == 4 and loaded.head.out_features == 4
    assert list(loaded.pretrained_cfg["label_names"]) == list(CLASSES)
    x, labels = _test_batch(workspace["data"], loaded)
    ref = _logits(finished["model"].cpu(), x)
    assert torch.equal(_logits(loaded, x), ref)
    # the recorded accuracy is that of the saved model on the test split
    assert 100.0 * (ref.argmax(-1) == labels).float().mean().item() == pytest.approx(results["last_top1"])
    via_timm = timm.create_model(f"local-dir:{out}", pretrained=True)
    assert torch.equal(_logits(via_timm, x), ref)

    card = (out / "README.md").read_text()
    assert "finetune:patchmix-cifar" in card and "automobile" in card
    config = json.loads((out / "config.json").read_text())
    assert config["num_classes"] == 4 and config["sslzoo"]["finetuned_from"] == workspace["backbone"]


def test_checkpoint_is_plain_data(finished):
    state = torch.load(finished["output"] / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert state["epoch"] == 2 and state["best_epoch"] == finished["best_epoch"]
    saved = load_file(finished["output"] / "model.safetensors")
    assert all(torch.equal(state["model"][k], v) for k, v in saved.items())


def test_resume_after_epoch_one_gives_the_uninterrupted_weights(workspace, finished, monkeypatch):
    out = workspace["root"] / "interrupted"
    save = finetune_run.save_torch_atomic

    def killed_after_first_checkpoint(state, path):
        save(state, path)
        raise KeyboardInterrupt  # as if the job were killed right after epoch 1 was saved

    monkeypatch.setattr(finetune_run, "save_torch_atomic", killed_after_first_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        ft.finetune(workspace["backbone"], workspace["data"], output=out, **RUN)
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert not (out / "model.safetensors").exists()
    monkeypatch.setattr(finetune_run, "save_torch_atomic", save)

    resumed = ft.finetune(workspace["backbone"], workspace["data"], output=out, resume=True, **RUN)
    expected = load_file(finished["output"] / "model.safetensors")
    got = load_file(out / "model.safetensors")
    assert expected.keys() == got.keys()
    assert all(torch.equal(got[k], v) for k, v in expected.items())
    assert (resumed["best_top1"], resumed["last_top1"]) == (finished["best_top1"], finished["last_top1"])
    with open(out / "log.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2]


def test_an_existing_run_is_neither_overwritten_nor_resumed_with_other_settings(workspace, finished):
    with pytest.raises(ft.FinetuneError, match="--resume"):
        ft.finetune(workspace["backbone"], workspace["data"], output=finished["output"], **RUN)
    with pytest.raises(ft.FinetuneError, match="weight_decay"):
        ft.finetune(workspace["backbone"], workspace["data"], output=finished["output"], resume=True,
                    **dict(RUN, weight_decay=0.1))


def test_layer_decay_scales_each_depth_and_no_decay_on_1d_params():
    depth, decay, lr = 3, 0.5, 1e-3
    model = build_vit(dict(img_size=32, patch_size=4, embed_dim=64, depth=depth, num_heads=2, num_classes=4))
    recipe = ft.resolve_recipe("default", layer_decay=decay, warmup_epochs=0)
    optimizer = ft.build_optimizer(model, recipe, lr)
    ft.build_scheduler(optimizer, recipe, lr, steps_per_epoch=10)
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    params = dict(model.named_parameters())

    def scale(name):
        return group_of[id(params[name])]["lr_scale"]

    assert scale("head.weight") == 1.0
    for i in range(depth):
        assert scale(f"blocks.{i}.attn.qkv.weight") == pytest.approx(decay ** (depth - i))
    for stem in ("patch_embed.proj.weight", "pos_embed", "cls_token"):
        assert scale(stem) == pytest.approx(decay ** (depth + 1))
    for name, p in params.items():  # the scheduler applied the scales: every group's lr is lr x its scale
        assert group_of[id(p)]["lr"] == pytest.approx(lr * scale(name))
        no_decay = p.ndim <= 1 or name in ("pos_embed", "cls_token")
        assert group_of[id(p)]["weight_decay"] == (0.0 if no_decay else recipe.weight_decay), name

    flat = ft.build_optimizer(model, ft.resolve_recipe("aps-cifar"), lr)  # APS: no layer decay
    assert {g.get("lr_scale", 1.0) for g in flat.param_groups} == {1.0}


def test_schedule_warms_up_then_follows_a_cosine_per_iteration():
    model = build_vit(dict(img_size=32, patch_size=4, embed_dim=64, depth=1, num_heads=2, num_classes=2))
    recipe = ft.resolve_recipe("default", epochs=4, warmup_epochs=1, warmup_lr=1e-6, min_lr=1e-5, layer_decay=1)
    optimizer = ft.build_optimizer(model, recipe, 1e-3)
    scheduler = ft.build_scheduler(optimizer, recipe, 1e-3, steps_per_epoch=10)
    lrs = []
    for step in range(41):
        scheduler.step_update(step)
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(1e-6) and lrs[10] == pytest.approx(1e-3) and lrs[40] == pytest.approx(1e-5)
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:11]))  # linear warm-up over the first epoch's iterations
    assert all(a > b for a, b in zip(lrs[10:40], lrs[11:41]))
    assert lrs[25] == pytest.approx((1e-3 + 1e-5) / 2)  # halfway through the cosine


def test_flags_override_the_recipe():
    parser = finetune_cli.add_finetune_arguments(argparse.ArgumentParser())
    args = parser.parse_args([
        "--model", "m", "--data", "d", "--output", "o", "--recipe", "aps-cifar", "--layer-decay", "0.65",
        "--batch-size", "64", "--mixup", "0", "--cutmix", "0", "--auto-augment", "none", "--base-lr", "1e-3",
        "--lr-batch-divisor", "0", "--train-crop", "random-resized-crop", "--seed", "7",
    ])
    kwargs = finetune_cli.finetune_kwargs_from_args(args)
    assert (kwargs["seed"], kwargs["output"], kwargs["recipe"]) == (7, "o", "aps-cifar")
    fields = {k: v for k, v in kwargs.items() if k in finetune_cli._RECIPE_FLAGS}
    recipe = ft.resolve_recipe(kwargs["recipe"], **fields)
    assert (recipe.layer_decay, recipe.batch_size, recipe.auto_augment, recipe.mixup_active) == (0.65, 64, None, False)
    assert recipe.lr_for(192) == 1e-3  # absolute: no batch scaling, no per-width table
    assert recipe.train_crop == "random-resized-crop"
    preset = finetune_recipes.FINETUNE_RECIPES["aps-cifar"]
    assert (recipe.weight_decay, recipe.min_lr, recipe.normalize) == (preset.weight_decay, preset.min_lr, "imagenet")
    assert ft.resolve_recipe("patchmix-cifar", layer_decay=1).layer_decay is None


@settings(max_examples=25, deadline=None)
@given(
    name=st.sampled_from(sorted(finetune_recipes.FINETUNE_RECIPES)),
    batch=st.integers(1, 2048).map(lambda b: 2 * b),
    width=st.sampled_from([64, 192, 384, 768, 1024]),
)
def test_lr_follows_the_recipe_scaling_rule(name, batch, width):
    recipe = ft.resolve_recipe(name, batch_size=batch)
    at_base = ft.resolve_recipe(name, batch_size=recipe.lr_batch_divisor or batch)
    expected = at_base.lr_for(width) * (batch / recipe.lr_batch_divisor if recipe.lr_batch_divisor else 1.0)
    assert recipe.lr_for(width) == pytest.approx(expected)
    assert ft.resolve_recipe(name, batch_size=batch, lr=0.123).lr_for(width) == 0.123


def test_cifar_train_transform_pads_and_crops_and_posterizes_to_zero_bits():
    from PIL import Image
    from timm.data import auto_augment
    from torchvision import transforms

    recipe = ft.resolve_recipe("aps-cifar")
    config = dict(input_size=(3, 32, 32), interpolation="bicubic", mean=(0.5,) * 3, std=(0.5,) * 3)
    tf = finetune_data.train_transform(recipe, config, source_size=(32, 32))
    steps = tf.transforms[1].transforms
    assert isinstance(steps[0], transforms.RandomCrop) and steps[0].padding == 4
    assert not any(isinstance(s, transforms.Resize) for s in steps)
    out = tf(torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8))
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    ops = next(s for s in steps if isinstance(s, auto_augment.RandAugment)).ops
    posterize = next(op for op in ops if op.name == "PosterizeIncreasing")
    black = posterize.aug_fn(Image.new("RGB", (8, 8), (200, 100, 50)), 0)  # Pillow 13 refuses 0 bits
    assert black.getextrema() == ((0, 0), (0, 0), (0, 0))
    resized = finetune_data.train_transform(recipe, config, source_size=(96, 96))
    assert isinstance(resized.transforms[1].transforms[0], transforms.Resize)


def test_bad_inputs_give_clear_errors(workspace, tmp_path):
    backbone = workspace["backbone"]
    with pytest.raises(SslzooError, match="does not exist"):
        ft.finetune(backbone, tmp_path / "nope", output=tmp_path / "o1", **RUN)
    one_class = _tiny_imagefolder(tmp_path / "one", classes=("cat",))
    with pytest.raises(ClassesError, match="at least two"):  # the check knn and linear share
        ft.finetune(backbone, one_class, output=tmp_path / "o2", **RUN)
    with pytest.raises(ft.FinetuneError, match="fewer than one batch"):
        ft.finetune(backbone, workspace["data"], output=tmp_path / "o3", **dict(RUN, batch_size=64))
    with pytest.raises(ft.FinetuneError, match="even"):
        ft.resolve_recipe("default", batch_size=7)
    with pytest.raises(ft.FinetuneError, match="aps-cifar"):
        ft.resolve_recipe("aps")
    with pytest.raises(ft.FinetuneError, match="layer_decay"):
        ft.resolve_recipe("default", layer_decay=1.5)
    assert not any((tmp_path / o).exists() for o in ("o1", "o2", "o3"))


def test_command_line_entry_runs_a_quick_fine_tune(workspace, tmp_path, capsys, monkeypatch):
    retained = []  # the command owns its process and keeps freed memory on the CPU (sslzoo.cpu_allocator)
    monkeypatch.setattr(finetune_cli, "retain_freed_memory", lambda: retained.append(True))
    parser = finetune_cli.add_finetune_arguments(argparse.ArgumentParser())
    out = tmp_path / "cli"
    args = parser.parse_args([
        "--model", workspace["backbone"], "--data", str(workspace["data"]), "--output", str(out),
        "--recipe", "aps-cifar", "--epochs", "1", "--batch-size", "8", "--max-steps-per-epoch", "2",
        "--limit-test", "8", "--num-workers", "0", "--no-progress", "--device", "cpu",
    ])
    assert finetune_cli.run_from_args(args) == 0
    assert retained == [True]
    results = json.loads((out / "results.json").read_text())
    assert (results["steps_per_epoch"], results["test_images"], results["recipe"]) == (2, 8, "aps-cifar")
    assert results["recipe_config"]["normalize"] == "imagenet"
    assert sslzoo.create_model(f"local-dir:{out}").pretrained_cfg["mean"] == (0.485, 0.456, 0.406)
    assert "best top-1" in capsys.readouterr().out


def test_a_refused_resume_names_only_the_settings_that_differ(workspace, finished):
    with pytest.raises(ft.FinetuneError) as e:
        ft.finetune(workspace["backbone"], workspace["data"], output=finished["output"], resume=True,
                    **dict(RUN, weight_decay=0.1, seed=4))
    message = str(e.value)
    assert "recipe_config.weight_decay: checkpoint 0.05, now 0.1" in message and "seed: checkpoint 3, now 4" in message
    assert "mixup" not in message and "layer_decay" not in message and len(message.splitlines()) == 1


def test_default_workers_fit_the_machine_and_the_folder_describes_the_fine_tuned_model(workspace, tmp_path):
    import os
    import warnings

    from sslzoo.weights import local_hubs

    assert ft.default_num_workers() == min(4, len(os.sched_getaffinity(0)))
    zoo = "aps_vit_micro_patch8_32.cifar10"
    out = tmp_path / "ft"
    args = finetune_cli.add_finetune_arguments(argparse.ArgumentParser()).parse_args([
        "--model", zoo, "--data", str(workspace["data"]), "--output", str(out), "--recipe", "aps-cifar",
        "--epochs", "1", "--batch-size", "8", "--max-steps-per-epoch", "2", "--limit-test", "8", "--no-progress",
    ])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert finetune_cli.run_from_args(args) == 0
    assert not [w for w in caught if "worker" in str(w.message)]  # torch's "suggested max number of worker" warning

    config = json.loads((out / "config.json").read_text())
    pcfg, scfg = config["pretrained_cfg"], config["sslzoo"]
    assert pcfg["tag"] == "ft_data" and "CIFAR-10" not in pcfg["description"]
    assert pcfg["description"].startswith("Fine-tuned on data (4 classes: airplane, automobile, bird, cat)")
    assert "finetune:aps-cifar" in pcfg["description"]
    origin = scfg["origin"]
    assert (origin["name"], origin["tag"], origin["method"]) == (zoo, "cifar10", "aps")
    assert origin["sha256"] == files.sha256_file(local_hubs.SHIPPED_HUB / zoo / "model.safetensors")
    assert "CIFAR-10" in origin["description"]  # the pre-training provenance is kept, as the origin
    assert scfg["finetune"]["num_classes"] == 4 and scfg["finetune"]["recipe"] == "aps-cifar"
    assert scfg["name"] == "ft"


def test_a_short_run_records_the_warm_up_it_ran_as_a_classifier_and_quietly(workspace, tmp_path, caplog):
    """aps-cifar's 5 warm-up epochs squeezed into a 1-epoch run: config, results and card say 1; the card's pipeline is
    image-classification; timm's "Cosine annealing scheduler will have no effect" stays out of the output."""
    import logging

    from sslzoo.card import read_front_matter

    out = tmp_path / "short"
    with caplog.at_level(logging.WARNING):
        results = ft.finetune(workspace["backbone"], workspace["data"], output=out, recipe="aps-cifar", epochs=1,
                              batch_size=8, max_steps_per_epoch=2, limit_test=8, num_workers=0, progress=False)
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "Cosine annealing" in m], messages
    assert any("warm-up (5 epochs) is longer than the run (1 epochs)" in m for m in messages)  # ours stays
    assert finetune_recipes.FINETUNE_RECIPES["aps-cifar"].warmup_epochs == 5
    assert results["recipe_config"]["warmup_epochs"] == 1 and results["recipe_warmup_epochs"] == 5
    assert json.loads((out / "results.json").read_text())["recipe_config"]["warmup_epochs"] == 1
    config = json.loads((out / "config.json").read_text())
    assert config["sslzoo"]["finetune"]["recipe_config"]["warmup_epochs"] == 1
    card = (out / "README.md").read_text()
    assert read_front_matter(card)["pipeline_tag"] == "image-classification"
    assert read_front_matter(card)["tags"][0] == "image-classification"
    assert "| warmup_epochs | 1.0 (the recipe's 5, cut to fit the 1-epoch run) |" in card
    # a run long enough for its warm-up records the recipe's value
    assert ft.warmup_run(finetune_recipes.FINETUNE_RECIPES["aps-cifar"], ft.build_scheduler(
        ft.build_optimizer(torch.nn.Linear(2, 2), finetune_recipes.FINETUNE_RECIPES["aps-cifar"], 1e-3),
        finetune_recipes.FINETUNE_RECIPES["aps-cifar"], 1e-3, steps_per_epoch=3), 3) == 5
