"""ADCLR reduces to DINO: with the query loss weight 0 and DINO's views, the same seed trains the same weights.

The query crops ride along (appended behind the one-way mask in student and teacher), so this checks that neither the
queries nor the mask leak into the global objective. Not bit-identical: the joint pass multiplies [view; queries]
token matrices, whose row blocks BLAS may sum in another order than the view alone. After three AdamW steps the two
runs differ by about 1e-9 per weight, except the key part of the qkv bias (about 1.5e-6): softmax ignores a key bias,
so its true gradient is 0 and AdamW scales the rounding noise up to lr-sized steps in both runs. The check: every
tensor differs by under 5 % of how far the query loss (weight 1, the control run) moves it from DINO's.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.training.test_pretrain import tiny_argv
from training import pretrain
from training.checkpoint import load_checkpoint
from training.config import resolve

SHARED = ["--arch", "dino_vit_pico_patch8_32", "--recipe", "dino"]


def _train(method: str, small_cifar, out: Path, extra: list[str]) -> dict[str, torch.Tensor]:
    argv = tiny_argv(method, small_cifar, out, steps=3, extra=SHARED + extra)
    pretrain.train(resolve(argv))
    return load_checkpoint(out / "checkpoint.pt")["method"]


# with DINO's local crops too: ADCLR = DINO's recipe + the query term, whatever the crops (16-px locals at patch 8)
@pytest.mark.parametrize("local_crops", [0, 2])
def test_adclr_with_query_weight_0_trains_dinos_weights(local_crops: int, small_cifar, tmp_path: Path) -> None:
    crops = ["--set", f"framework.local_crops_number={local_crops}", "--set", "framework.local_crops_size=16"]
    dino = _train("dino", small_cifar, tmp_path / "dino", crops)
    adclr = _train("adclr", small_cifar, tmp_path / "adclr", crops + ["--set", "method_args.weight=0.0"])
    weighted = _train("adclr", small_cifar, tmp_path / "weighted", crops + ["--set", "method_args.weight=1.0"])
    assert set(adclr) - set(dino) <= {"query_center.center"}, set(adclr) - set(dino)  # no parameter added
    compared = 0
    for key, value in dino.items():
        if not value.is_floating_point():
            continue
        off = float((adclr[key] - value).abs().max())
        control = float((weighted[key] - value).abs().max())
        assert off <= 0.05 * control + 1e-9, f"{key}: {off:.2e} with the query loss off, {control:.2e} with it on"
        compared += control > 0
    assert compared > 30  # the control moved the student and the teacher: the query loss is not a no-op
