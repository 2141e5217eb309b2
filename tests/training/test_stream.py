"""Streaming input: mixed-size JPEG folders train every method with workers; both data modes give the methods the same
geometry; unreadable files, the file-list cache, gradient accumulation and the checkpoints kept."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from tests.training.conftest import upscaled_copy
from tests.training.test_pretrain import METHOD_NAMES, tiny_argv
from training import loop, pretrain
from training.checkpoint import load_checkpoint
from training.config import resolve
from training.data import file_list as file_list_module
from training.data import list_image_files
from training.views.sample_draws import PHOTOMETRIC, SampleDraws, sample_keys


@pytest.fixture(scope="module")
def mixed_folder(small_cifar, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An ImageFolder of the small CIFAR split's JPEGs upscaled to random sizes (40 to 120 px a side)."""
    root = upscaled_copy(small_cifar[0], tmp_path_factory.mktemp("mixed"), 40, 120)
    return root, tmp_path_factory.mktemp("mixed_cache")


def _log(run: Path) -> list[dict[str, str]]:
    with open(run / "log.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_each_method_trains_streamed_with_workers(method: str, mixed_folder, tmp_path: Path) -> None:
    extra = ["--workers", "2"]
    if method == "ccrop":  # the box refresh after epoch 1 streams whole images through the workers too
        extra += ["--train-limit", "32", "--set", "method_args.warmup_epochs=1", "--set", "method_args.interval=1"]
    tr = pretrain.train(resolve(tiny_argv(method, mixed_folder, tmp_path / "run", steps=3, extra=extra)))
    assert tr.source.mode == "stream"  # auto: the images differ in size
    rows = _log(tr.run_dir)
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3]
    assert all(float(r["loss"]) == float(r["loss"]) for r in rows)  # finite, logged
    if method == "ccrop":
        assert tr.method.crops.updates == 1
        boxes = tr.method.crops.bank.boxes
        assert not torch.equal(boxes, torch.tensor([0.0, 0.0, 1.0, 1.0]).expand_as(boxes))


def _first_batch(argv: list[str]):
    tr = pretrain.build(resolve(argv), pretrain.distributed.init_distributed("cpu"))
    batch = next(tr.source.epoch_batches(1, 2))
    return tr, batch


def test_memory_and_stream_give_the_method_the_same_geometry(small_cifar, tmp_path: Path) -> None:
    base = tiny_argv("aps", small_cifar, tmp_path / "run")
    mem_tr, mem = _first_batch(base + ["--data-mode", "memory"])
    st_tr, st = _first_batch(base + ["--data-mode", "stream", "--workers", "2"])
    assert mem_tr.source.mode == "memory" and st_tr.source.mode == "stream"
    assert torch.equal(mem.indices, st.indices)
    for name in ("x1", "x2"):
        assert torch.equal(mem.geometry[name].boxes, st.geometry[name].boxes), name
        assert torch.equal(mem.geometry[name].flipped, st.geometry[name].flipped), name
        # the same crops, resampled by two implementations (float matrices, torchvision on uint8)
        assert (mem.crops[name] - st.crops[name]).abs().mean() < 0.02
    views = {}
    for key, tr, batch in (("memory", mem_tr, mem), ("stream", st_tr, st)):
        draws = SampleDraws(sample_keys(0, 1, batch.indices, PHOTOMETRIC))
        views[key] = tr.method.finish_views(batch.crops, batch.geometry, draws, 1)
    assert torch.equal(views["memory"]["s1"], views["stream"]["s1"])  # APS's patch indices
    assert torch.equal(views["memory"]["s2"], views["stream"]["s2"])


def test_the_workers_do_not_change_the_batches(mixed_folder, tmp_path: Path) -> None:
    base = tiny_argv("dino", mixed_folder, tmp_path / "run")
    _, none = _first_batch(base + ["--workers", "0"])
    _, two = _first_batch(base + ["--workers", "2"])
    for name in none.crops:
        assert torch.equal(none.crops[name], two.crops[name]), name
        assert torch.equal(none.geometry[name].boxes, two.geometry[name].boxes), name


def _corrupt_one(root: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the folder in which one JPEG of the train split is truncated garbage."""
    copy = tmp_path / "data"
    for path in sorted(root.rglob("*.jpg")):
        out = copy / path.relative_to(root)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(path.read_bytes())
    bad = sorted((copy / "train").rglob("*.jpg"))[5]
    bad.write_bytes(bad.read_bytes()[:40])
    return copy, bad


# one rule in both data modes: auto streams the mixed-size folder and holds the 32-px CIFAR one in memory
@pytest.mark.parametrize("mode", ["stream", "memory"])
def test_an_unreadable_image_is_replaced_and_counted_or_refused(mode: str, mixed_folder, small_cifar, tmp_path: Path,
                                                               caplog, capsys: pytest.CaptureFixture) -> None:
    data, bad = _corrupt_one((mixed_folder if mode == "stream" else small_cifar)[0], tmp_path)
    cache = tmp_path / "cache"
    # 80 images, batch 16: one epoch of 5 iterations meets every file once
    tr = pretrain.train(resolve(tiny_argv("mocov3", (data, cache), tmp_path / "run", steps=5)))
    assert tr.source.mode == mode and tr.replaced_images == 1
    assert int(_log(tr.run_dir)[-1]["replaced_images"]) == 1
    assert any(str(bad) in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    code = pretrain.main(tiny_argv("mocov3", (data, cache), tmp_path / "strict", steps=5, extra=["--strict-data"]))
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith(("sslzoo: ", "training: "))]
    assert code == 2 and len(err) == 1 and " error: " in err[0] and str(bad) in err[0]


def test_the_file_list_is_cached_until_the_tree_changes(mixed_folder, tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "tree"
    for path in sorted((mixed_folder[0] / "train").rglob("*.jpg"))[:20]:
        out = root / "train" / path.parent.name / path.name
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(path.read_bytes())
    first = list_image_files(root, "train", cache_dir=tmp_path / "c")
    real = file_list_module.imagefolder_listing

    def no_walk(*args, **kwargs):
        raise AssertionError("listed the tree again")

    monkeypatch.setattr(file_list_module, "imagefolder_listing", no_walk)
    again = list_image_files(root, "train", cache_dir=tmp_path / "c")
    assert again == first
    cls = sorted((root / "train").iterdir())[0]
    (cls / "new.jpg").write_bytes(next(cls.iterdir()).read_bytes())  # the class folder's time changes
    monkeypatch.setattr(file_list_module, "imagefolder_listing", real)
    changed = list_image_files(root, "train", cache_dir=tmp_path / "c")
    assert len(changed) == len(first) + 1 and str(cls / "new.jpg") in changed.paths


def test_a_file_list_with_labels_streams(mixed_folder, tmp_path: Path) -> None:
    files = list_image_files(mixed_folder[0], "train", cache_dir=tmp_path / "c")
    listing = tmp_path / "train.txt"
    listing.write_text("# path label\n" + "".join(f"{p} {y}\n" for p, y in zip(files.paths, files.labels)))
    tr = pretrain.train(resolve(tiny_argv("mocov3", (listing, tmp_path / "c"), tmp_path / "run", steps=1)))
    assert tr.source.mode == "stream" and len(tr.source) == len(files)


@pytest.mark.parametrize("flags,message", [
    (["--data-mode", "memory"], "--data-mode stream"),
])
def test_data_mode_errors_are_one_line(flags, message, mixed_folder, tmp_path: Path,
                                       capsys: pytest.CaptureFixture) -> None:
    code = pretrain.main(tiny_argv("mocov3", mixed_folder, tmp_path / "run", steps=1, extra=flags))
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith(("sslzoo: ", "training: "))]
    assert code == 2 and len(err) == 1 and " error: " in err[0] and message in err[0]


def test_accumulating_two_micro_batches_equals_one_batch(mixed_folder, tmp_path: Path) -> None:
    # DINO without a BatchNorm head has no batch-coupled term in its loss, and its centre is updated once per step
    results = {}
    for accum in (1, 2):
        argv = tiny_argv("dino", mixed_folder, tmp_path / f"a{accum}", steps=1,
                         extra=["--accum-steps", str(accum), "--workers", "0"])
        tr = pretrain.build(resolve(argv), pretrain.distributed.init_distributed("cpu"))
        terms = loop.train_iteration(tr, next(tr.source.epoch_batches(0, 0)))
        results[accum] = (terms["loss"], {k: v.detach().clone() for k, v in tr.method.state_dict().items()})
    assert results[2][0] == pytest.approx(results[1][0], rel=1e-5)
    for k, v in results[1][1].items():
        assert torch.allclose(results[2][1][k].float(), v.float(), rtol=1e-4, atol=1e-6), k


def test_keep_n_checkpoints(small_cifar, tmp_path: Path) -> None:
    argv = tiny_argv("mocov3", small_cifar, tmp_path / "run", steps=4, extra=["--ckpt-every", "1", "--keep", "2"])
    tr = pretrain.train(resolve(argv))
    kept = sorted(p.name for p in tr.run_dir.glob("checkpoint-*.pt"))
    assert kept == ["checkpoint-00000003.pt", "checkpoint-00000004.pt"]
    latest = tr.run_dir / "checkpoint.pt"
    assert latest.read_bytes() == (tr.run_dir / kept[-1]).read_bytes()
    assert load_checkpoint(tr.run_dir / kept[0])["iteration"] == 3
