"""Kill-and-resume reaches bitwise the weights of an uninterrupted run; a non-finite loss stops the run cleanly."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from tests.training.test_pretrain import tiny_argv
from training import pretrain
from training.checkpoint import load_checkpoint, save_checkpoint
from training.config import resolve
from training.methods import MoCoV3Method
from sslzoo.errors import CheckpointFormatError


def _flat(state) -> dict[str, torch.Tensor]:
    out = {}
    if isinstance(state, torch.Tensor):
        return {"": state}
    items = state.items() if isinstance(state, dict) else enumerate(state) if isinstance(state, (list, tuple)) else []
    for k, v in items:
        for sub, t in _flat(v).items():
            out[f"{k}.{sub}"] = t
    return out


@pytest.mark.parametrize("method,extra", [
    ("mocov3", []),
    ("aps", []),
    ("dino", []),
    ("ccrop", ["--train-limit", "48", "--set", "method_args.warmup_epochs=1", "--set", "method_args.interval=1"]),
])
def test_resume_is_bitwise_identical(method: str, extra: list[str], small_cifar, tmp_path: Path) -> None:
    steps = 6  # with 48 images: 3 iterations per epoch, so ccrop updates its boxes after epoch 1
    whole = pretrain.train(resolve(tiny_argv(method, small_cifar, tmp_path / "whole", steps=steps, extra=extra)))
    argv = tiny_argv(method, small_cifar, tmp_path / "killed", steps=steps,
                     extra=extra + ["--ckpt-every", "2"])
    pretrain.train(resolve(argv), stop_at=3)  # "killed" after iteration 3: the checkpoint holds iteration 2
    assert load_checkpoint(tmp_path / "killed" / "checkpoint.pt")["iteration"] == 2
    resumed = pretrain.train(resolve(argv + ["--resume", "auto"]))  # fresh objects, same run folder
    a = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "killed" / "checkpoint.pt")
    assert a["iteration"] == b["iteration"] == steps
    for part in ("method", "optimizer", "extra"):
        fa, fb = _flat(a[part]), _flat(b[part])
        assert fa.keys() == fb.keys()
        for k in fa:
            assert torch.equal(fa[k], fb[k]), f"{part}.{k} differs after resuming"
    assert resumed.iteration == whole.iteration == steps
    # the rows of iteration 3 (logged, then lost with the kill) are not repeated: one timeline in the log
    with open(tmp_path / "killed" / pretrain.LOG_NAME, newline="", encoding="utf-8") as f:
        logged = [int(row["iteration"]) for row in csv.DictReader(f)]
    with open(tmp_path / "whole" / pretrain.LOG_NAME, newline="", encoding="utf-8") as f:
        assert logged == [int(row["iteration"]) for row in csv.DictReader(f)]


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(small_cifar, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    original = MoCoV3Method.symmetric

    def poisoned(self, *args, **kwargs):
        calls["n"] += 1
        out = original(self, *args, **kwargs)
        if calls["n"] == 4:
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(MoCoV3Method, "symmetric", poisoned)
    cfg = resolve(tiny_argv("mocov3", small_cifar, tmp_path / "run", steps=6, extra=["--ckpt-every", "1"]))
    with pytest.raises(pretrain.NonFiniteLossError, match="iteration 3"):
        pretrain.train(cfg)
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["iteration"] == 3
    # the command line turns it into a message and exit status 1
    calls["n"] = 0
    argv = tiny_argv("mocov3", small_cifar, tmp_path / "cli", steps=6)
    assert pretrain.main(argv) == 1


def test_checkpoint_is_atomic_and_checked(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "checkpoint.pt", {"iteration": 1, "w": torch.ones(2)})
    save_checkpoint(path, {"iteration": 2, "w": torch.zeros(2)})
    assert load_checkpoint(path)["iteration"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]  # no temporary file left
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointFormatError, match="cannot read"):
        load_checkpoint(path)


def test_existing_run_needs_resume(small_cifar, tmp_path: Path) -> None:
    argv = tiny_argv("mocov3", small_cifar, tmp_path / "run", steps=1)
    pretrain.train(resolve(argv))
    with pytest.raises(pretrain.SslzooError, match="--resume auto"):
        pretrain.train(resolve(argv))
