"""The pretrain loop: every method trains a few steps on real CIFAR-10 (JPEG q75); run files; config resolution."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision.transforms.v2.functional as TF
import yaml

from sslzoo.eval.knn import knn_classify
from training import pretrain
from training.config import ConfigError, resolve
from training.data import load_split

METHOD_NAMES = ("mocov3", "ccrop", "aps", "patchmix", "dino", "adclr")
_MOCO_HEADS = ["framework.projector.hidden=64", "framework.predictor.hidden=64", "framework.projector.out=32",
               "framework.predictor.out=32"]
_DINO_HEAD = ["framework.head.hidden=64", "framework.head.bottleneck=32", "framework.head.out_dim=128"]
# tiny heads (and crops that fit a patch-8 ViT) per method, on top of each method's own recipe
TINY_SETS = {
    "mocov3": _MOCO_HEADS,
    "ccrop": _MOCO_HEADS,
    "aps": _MOCO_HEADS,
    "patchmix": _MOCO_HEADS,
    "dino": _DINO_HEAD + ["framework.local_crops_number=2"],
    "adclr": _DINO_HEAD + ["method_args.size=16"],
}


def tiny_argv(method: str, data: tuple[Path, Path], output: Path, *, steps: int = 3, extra: list[str] = ()) -> list[str]:
    """Command line of a tiny CPU run: pico ViT (64 wide, 2 blocks, patch 8), batch 16, tiny heads."""
    root, cache = data
    sets = TINY_SETS[method] + [f"cache_dir={cache}", "log.every=1", "log.knn_every_steps=0", "optim.warmup_epochs=0",
                                "arch_kwargs.drop_path_rate=0.0"]
    argv = ["--method", method, "--arch", "vit_pico_patch8_32", "--data", str(root), "--steps", str(steps),
            "--batch-size", "16", "--output", str(output), "--device", "cpu", "--no-progress"]
    for s in sets:
        argv += ["--set", s]
    return argv + list(extra)


def direct_knn_top1(method, root: Path, cache: Path, *, k: int = 20) -> float:
    """The kNN top-1 (%) of the whole test split against the whole train split, computed here and not by the monitor.

    Features: CLS of the evaluated encoder (the momentum encoder or teacher when the framework has one, else the
    online encoder) in eval mode, on the images resized (bicubic) to its input and normalised with the views'
    statistics; the vote is sslzoo's ``knn_classify`` (k 20, T 0.07), as the monitor's protocol says.
    """
    fw = method.framework
    twin = getattr(fw, "momentum_backbone", None)
    vit = twin if twin is not None else getattr(fw, "teacher_backbone", fw.backbone)
    view = method.pipelines[0].cfg
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (view.mean, view.std))
    side = list(vit.patch_embed.img_size)
    was_training = vit.training
    vit.eval()

    def features(split: str):
        data = load_split(root, split, cache_dir=cache)
        images = data.images
        if list(images.shape[-2:]) != side:
            images = TF.resize(images, side, interpolation=TF.InterpolationMode.BICUBIC, antialias=True)
        with torch.no_grad():
            return vit((images.float() / 255 - mean) / std), data.labels

    bank, bank_labels = features("train")
    queries, labels = features("test")
    vit.train(was_training)
    pred = knn_classify(bank, bank_labels, queries, k=min(k, len(bank)), temperature=0.07,
                        num_classes=int(max(bank_labels.max(), labels.max())) + 1)
    return 100.0 * (pred == labels).float().mean().item()


def read_log(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_each_method_trains_on_real_cifar(method: str, small_cifar, tmp_path: Path) -> None:
    cfg = resolve(tiny_argv(method, small_cifar, tmp_path / "run", extra=["--set", "log.knn_every_steps=3"]))
    torch.manual_seed(cfg["seed"])
    env = pretrain.distributed.init_distributed("cpu")
    initial = {k: v.clone() for k, v in pretrain.build(cfg, env).method.state_dict().items()}
    tr = pretrain.train(cfg)
    rows = read_log(tr.run_dir)
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3]
    losses = [float(r["loss"]) for r in rows]
    assert all(math.isfinite(v) and v > 0 for v in losses)
    # the monitor's figure (whole bank and test split here) is the kNN of the evaluated encoder's own features
    assert float(rows[-1]["knn_top1"]) == pytest.approx(direct_knn_top1(tr.method, *small_cifar), abs=1e-4)
    final = tr.method.state_dict()
    online = [k for k in final if k.startswith("framework.backbone.") or k.startswith("framework.head")
              or k.startswith("framework.projector")]
    assert any(not torch.equal(initial[k], final[k]) for k in online)
    assert all(torch.isfinite(v.float()).all() for v in final.values())
    if tr.method.ema_base() is not None:  # the momentum encoder / teacher moved too
        assert any(not torch.equal(initial[k], final[k]) for k in final
                   if k.startswith(("framework.momentum_backbone.", "framework.teacher_backbone.")))
    saved = yaml.safe_load((tr.run_dir / "config.yaml").read_text())
    assert saved["method"] == method and saved["steps"] == 3
    assert (tr.run_dir / "env.json").is_file() and (tr.run_dir / "checkpoint.pt").is_file()


def test_aps_takes_nsampling_optimizer_steps_per_batch(small_cifar, tmp_path: Path) -> None:
    tr = pretrain.train(resolve(tiny_argv("aps", small_cifar, tmp_path / "run", steps=2)))
    steps = {int(s["step"]) for s in tr.optimizer.state_dict()["state"].values()}
    assert steps == {8}  # 2 batches x nsampling 4
    assert [int(r["step"]) for r in read_log(tr.run_dir)] == [4, 8]


def test_ccrop_updates_boxes_after_warmup(small_cifar, tmp_path: Path) -> None:
    # 80 images / batch 16 = 5 iterations per epoch; warm-up 1 epoch, update every epoch, 3 epochs
    argv = tiny_argv("ccrop", small_cifar, tmp_path / "run", steps=15,
                     extra=["--set", "method_args.warmup_epochs=1", "--set", "method_args.interval=1",
                            "--set", "method_args.threshold=0.5", "--train-limit", "80"])
    tr = pretrain.train(resolve(argv))
    assert tr.method.crops.updates == 2  # end of epochs 1 and 2, not after the last
    boxes = tr.method.crops.bank.boxes
    assert boxes.shape == (80, 4)
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert not torch.equal(boxes, torch.tensor([0.0, 0.0, 1.0, 1.0]).expand_as(boxes))


def test_config_precedence_and_errors(tmp_path: Path) -> None:
    cfg = resolve(["--method", "aps", "--profile", "quick", "--set", "optim.base_lr=0.5", "--lr", "0.25",
                   "--steps", "7"])
    assert cfg["arch"] == "vit_micro_patch4_32"  # profile over recipe
    assert cfg["optim"]["base_lr"] == 0.25  # flag over --set
    assert cfg["optim"]["decay_all"] is True and cfg["framework"]["temperature"] == 0.1  # recipe kept
    assert cfg["steps"] == 7
    with pytest.raises(ConfigError, match="unknown setting"):
        resolve(["--method", "aps", "--set", "optim.base_rate=1"])
    with pytest.raises(ConfigError, match="no recipe"):
        resolve(["--recipe", "nonexistent"])


def test_exponent_floats_are_numbers(tmp_path: Path) -> None:
    # PyYAML's YAML 1.1 reads 1e-3 as a string, which crashed training at the first learning-rate product
    cfg = resolve(["--method", "dino", "--set", "optim.base_lr=1e-3", "--set", "framework.global_scale=[2E-1, 1]",
                   "--set", "method_args.tag=5e-4x"])
    assert cfg["optim"]["base_lr"] == 1e-3
    assert cfg["framework"]["global_scale"] == [0.2, 1]
    assert cfg["method_args"]["tag"] == "5e-4x"
    recipe = tmp_path / "r.yaml"
    recipe.write_text("method: mocov3\noptim: {base_lr: 5e-4, min_lr: -1E+0}\n", encoding="utf-8")
    optim = resolve(["--recipe", str(recipe)])["optim"]
    assert optim["base_lr"] == 5e-4 and optim["min_lr"] == -1.0


def test_cli_reports_missing_data(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = pretrain.main(["--method", "mocov3", "--data", str(tmp_path / "nowhere"), "--steps", "1",
                          "--output", str(tmp_path / "run"), "--device", "cpu"])
    assert code == 2
    assert "does not exist" in capsys.readouterr().err


def test_the_retained_cpu_allocator_changes_no_value(small_cifar, tmp_path: Path) -> None:
    # each run in its own process: the allocator setting is process-wide and this one may already hold it
    logs = {}
    for mode in ("system", "retain"):
        out = tmp_path / mode
        argv = tiny_argv("mocov3", small_cifar, out, extra=["--cpu-allocator", mode])
        subprocess.run([sys.executable, "-m", "training.pretrain", *argv], check=True, capture_output=True,
                       cwd=Path(__file__).resolve().parents[2])
        logs[mode] = [row["loss"] for row in read_log(out)]
    assert len(logs["retain"]) == 3 and logs["retain"] == logs["system"]  # the logged losses, digit for digit
    with pytest.raises(ConfigError, match="cpu_allocator must be retain or system"):
        resolve(["--method", "mocov3", "--set", "cpu_allocator=jemalloc"])
