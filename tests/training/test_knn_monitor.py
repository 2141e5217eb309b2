"""The online kNN monitor: any image size is brought to the model's input, and a monitor failure never ends a run."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pytest
from PIL import Image

import torch

from training import pretrain
from training.checkpoint import load_checkpoint
from training.config import parse_yaml, resolve
from training.knn_monitor import KnnMonitor
from training.methods import build_method

from tests.training.test_pretrain import direct_knn_top1, tiny_argv


@pytest.fixture(scope="module")
def fashion_mnist_like(small_cifar, tmp_path_factory) -> Path:
    """28 px grayscale PNGs in train/ and test/ class folders (real CIFAR-10 content, Fashion-MNIST's format)."""
    root = tmp_path_factory.mktemp("gray28")
    for src in sorted(small_cifar[0].rglob("*.jpg")):
        dst = root / src.relative_to(small_cifar[0]).with_suffix(".png")
        dst.parent.mkdir(parents=True, exist_ok=True)
        Image.open(src).convert("L").resize((28, 28), Image.BICUBIC).save(dst)
    return root


def _log(run: Path) -> list[dict[str, str]]:
    with open(run / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_pretraining_on_28px_grayscale_is_monitored_and_checkpointed(fashion_mnist_like, small_cifar, tmp_path,
                                                                     capsys):
    run = tmp_path / "run"
    code = pretrain.main(["--method", "aps", "--profile", "quick", "--data", str(fashion_mnist_like), "--steps", "1",
                          "--batch-size", "32", "--output", str(run), "--no-progress",
                          "--set", f"cache_dir={small_cifar[1]}"])
    assert code == 0, capsys.readouterr().err
    ckpt = load_checkpoint(run / "checkpoint.pt")
    assert ckpt["iteration"] == 1
    # measured at the model's 32 px, not refused: the figure is the kNN of the trained encoder on the 28 px images
    # resized to 32 px, computed here from the run's own checkpoint
    cfg = parse_yaml((run / "config.yaml").read_text(encoding="utf-8"))
    method = build_method(cfg, num_images=1, total_epochs=1, device=torch.device("cpu"))
    method.load_state_dict(ckpt["method"])
    assert method.framework.backbone.patch_embed.img_size == (32, 32)
    logged = float(_log(run)[-1]["knn_top1"])
    assert logged == pytest.approx(direct_knn_top1(method, fashion_mnist_like, small_cifar[1]), abs=1e-4)


def test_a_failing_monitor_is_reported_and_training_goes_on(small_cifar, tmp_path, monkeypatch, caplog):
    def broken(self, vit, data_config, device):
        raise RuntimeError("out of memory while encoding the bank")

    monkeypatch.setattr(KnnMonitor, "__call__", broken)
    argv = tiny_argv("mocov3", small_cifar, tmp_path / "run", steps=3, extra=["--set", "log.knn_every_steps=1"])
    with caplog.at_level(logging.WARNING, logger="training.pretrain"):
        tr = pretrain.train(resolve(argv))
    assert tr.iteration == 3 and load_checkpoint(tr.run_dir / "checkpoint.pt")["iteration"] == 3
    assert [r["knn_top1"] for r in _log(tr.run_dir)] == ["", "", ""]
    failures = [r.getMessage() for r in caplog.records if "kNN monitor failed" in r.getMessage()]
    assert len(failures) == 1 and "iteration 1" in failures[0] and "out of memory" in failures[0]


def test_the_checkpoint_is_written_before_the_monitor_runs(small_cifar, tmp_path, monkeypatch):
    seen = []

    def record(self, vit, data_config, device):
        seen.append(load_checkpoint(tmp_path / "run" / "checkpoint.pt")["iteration"])
        return 50.0

    monkeypatch.setattr(KnnMonitor, "__call__", record)
    argv = tiny_argv("mocov3", small_cifar, tmp_path / "run", steps=2,
                     extra=["--set", "log.knn_every_steps=1", "--ckpt-every", "1"])
    pretrain.train(resolve(argv))
    assert seen == [1, 2]


@pytest.mark.parametrize("method, twin", [("mocov3", "momentum_backbone"), ("dino", "teacher_backbone"),
                                          ("aps", "backbone")])
def test_the_monitor_measures_the_evaluated_encoder(method, twin, small_cifar, tmp_path, monkeypatch):
    # the momentum encoder or teacher when there is one (what publish writes), else the online encoder
    seen = []

    def record(self, vit, data_config, device):
        seen.append((vit, data_config))
        return 50.0

    monkeypatch.setattr(KnnMonitor, "__call__", record)
    argv = tiny_argv(method, small_cifar, tmp_path / "run", steps=1, extra=["--set", "log.knn_every_steps=1"])
    tr = pretrain.train(resolve(argv))
    (vit, data_config), = seen
    assert vit is getattr(tr.method.framework, twin)
    view = tr.method.pipelines[0].cfg
    assert (data_config["mean"], data_config["std"], data_config["input_size"]) == (view.mean, view.std, (3, 32, 32))
