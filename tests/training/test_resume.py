"""Kill-and-resume reaches bitwise the weights of an uninterrupted run; a non-finite loss stops the run cleanly."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.training.test_pretrain import tiny_argv
from training import pretrain
from training.checkpoint import load_checkpoint, save_checkpoint
from training.config import resolve
from training.methods import MoCoV3Method
from sslzoo.errors import CheckpointFormatError

REPO = Path(__file__).resolve().parents[2]


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


def _pretrain_process(argv: list[str]) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=f"{REPO / 'src'}{os.pathsep}{REPO}")
    return subprocess.Popen([sys.executable, "-m", "training.pretrain", *argv], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("mode", ["memory", "stream"])
def test_sigkill_then_resume_is_bitwise_identical(mode: str, small_cifar, tmp_path: Path) -> None:
    extra = ["--data-mode", mode, "--workers", "2", "--ckpt-every", "3"]
    steps = 24
    whole = _pretrain_process(tiny_argv("aps", small_cifar, tmp_path / "whole", steps=steps, extra=extra))
    argv = tiny_argv("aps", small_cifar, tmp_path / "killed", steps=steps, extra=extra)
    victim = _pretrain_process(argv)
    ckpt = tmp_path / "killed" / "checkpoint.pt"
    deadline = time.monotonic() + 240
    while not ckpt.is_file() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(timeout=60) == -signal.SIGKILL, "the run ended before it could be killed"
    assert 0 < load_checkpoint(ckpt)["iteration"] < steps
    resumed = _pretrain_process(argv + ["--resume", "auto"])
    for proc in (whole, resumed):
        assert proc.wait(timeout=300) == 0, proc.stderr.read()[-2000:]
    a, b = load_checkpoint(tmp_path / "whole" / "checkpoint.pt"), load_checkpoint(ckpt)
    assert a["iteration"] == b["iteration"] == steps
    for part in ("method", "optimizer"):
        fa, fb = _flat(a[part]), _flat(b[part])
        assert fa.keys() == fb.keys() and all(torch.equal(fa[k], fb[k]) for k in fa), part


_DIE_DURING_SECOND_SAVE = """
import os, signal, sys, torch
from pathlib import Path
real, calls = torch.save, []
def save(obj, f, *args, **kwargs):
    calls.append(f)
    if len(calls) == 2:  # the second checkpoint: half of it on disk, then SIGKILL (no cleanup runs)
        Path(f).write_bytes(b"half a checkpoint")
        os.kill(os.getpid(), signal.SIGKILL)
    return real(obj, f, *args, **kwargs)
torch.save = save
from training import pretrain
sys.exit(pretrain.main(sys.argv[1:]))
"""


def test_a_kill_during_a_checkpoint_write_leaves_the_previous_one(small_cifar, tmp_path: Path) -> None:
    run = tmp_path / "run"
    argv = tiny_argv("mocov3", small_cifar, run, steps=4, extra=["--ckpt-every", "2"])
    env = dict(os.environ, PYTHONPATH=f"{REPO / 'src'}{os.pathsep}{REPO}")
    done = subprocess.run([sys.executable, "-c", _DIE_DURING_SECOND_SAVE, *argv], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    assert [p.read_bytes() for p in run.glob(".checkpoint.pt.*")] == [b"half a checkpoint"]  # the torn write
    assert load_checkpoint(run / "checkpoint.pt")["iteration"] == 2
    tr = pretrain.train(resolve(argv + ["--resume", "auto"]))
    assert tr.iteration == 4 and load_checkpoint(run / "checkpoint.pt")["iteration"] == 4
