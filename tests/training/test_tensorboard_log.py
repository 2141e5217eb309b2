"""TensorBoard event files hold log.csv's rows; without the tensorboard package training still runs and says why."""

from __future__ import annotations

import builtins
import csv
import logging
from pathlib import Path

import pytest

from tests.training.test_pretrain import tiny_argv
from training import pretrain
from training.config import resolve
from training.tensorboard_log import EVENTS_DIR


def _scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / EVENTS_DIR))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_event_files_hold_the_log_rows_and_a_resume_purges_the_repeated_ones(small_cifar, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    run = tmp_path / "run"
    argv = tiny_argv("dino", small_cifar, run, steps=4, extra=["--ckpt-every", "2"])
    pretrain.train(resolve(argv), stop_at=3)  # iteration 3 is logged, then lost with the "kill"
    pretrain.train(resolve(argv + ["--resume", "auto"]))
    scalars = _scalars(run)
    with open(run / "log.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert {"loss/loss", "optim/lr", "optim/weight_decay", "optim/ema_momentum", "optim/teacher_temperature",
            "speed/images_per_s"} <= set(scalars)
    assert [s for s, _ in scalars["loss/loss"]] == [1, 2, 3, 4]  # one point per iteration, none repeated
    assert [v for _, v in scalars["loss/loss"]] == pytest.approx([float(r["loss"]) for r in rows], rel=1e-6)
    assert scalars["optim/teacher_temperature"][0][1] == pytest.approx(0.04)


def test_training_runs_without_tensorboard_and_says_how_to_enable_it(small_cifar, tmp_path: Path, monkeypatch,
                                                                      caplog) -> None:
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard") or name.startswith("tensorboard"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with caplog.at_level(logging.INFO, logger="training.tensorboard_log"):
        tr = pretrain.train(resolve(tiny_argv("mocov3", small_cifar, tmp_path / "run", steps=2)))
    assert tr.iteration == 2 and not (tmp_path / "run" / EVENTS_DIR).exists()
    assert "pip install 'sslzoo[train]'" in caplog.text
