"""Per-optimizer-step schedules (learning rate, weight decay, EMA momentum) and AdamW parameter groups.

- lr: linear warm-up from 0 to the peak, then half-cosine to ``min_lr`` (MoCo v3, PatchMix, DINO; APS's per-epoch
  ``min((e + 1) / W, cosine)`` is applied per step in this form, see training/README.md);
- weight decay: half-cosine from the start to the end value (DINO, PatchMix; constant when both are equal);
- EMA momentum: m(t) = 1 - (1 - m0) (1 + cos(pi t / T)) / 2 (MoCo v3, PatchMix, DINO).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def cosine(step: float, total: float, start: float, end: float) -> float:
    """Half-cosine from ``start`` at step 0 to ``end`` at ``total``."""
    if total <= 0:
        return end
    t = min(max(step / total, 0.0), 1.0)
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * t))


def warmup_cosine(step: float, total: float, warmup: float, peak: float, final: float) -> float:
    """Linear warm-up from 0 over ``warmup`` steps, then half-cosine from ``peak`` to ``final``."""
    if step < warmup:
        return peak * step / warmup
    return cosine(step - warmup, total - warmup, peak, final)


def ema_momentum(step: float, total: float, base: float) -> float:
    """The cosine EMA momentum schedule from ``base`` to 1."""
    return 1.0 - (1.0 - base) * 0.5 * (1.0 + math.cos(math.pi * min(max(step / total, 0.0), 1.0)))


def param_groups(model: nn.Module, *, decay_all: bool) -> list[dict]:
    """AdamW groups: weight decay on >= 2-D non-bias weights only (MoCo v3, PatchMix, DINO), or on everything (APS).

    Each group carries ``apply_wd`` so that the weight-decay schedule only touches the decayed group.
    """
    decay, plain = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if decay_all or (p.ndim > 1 and not name.endswith(".bias")) else plain).append(p)
    groups = [{"params": decay, "apply_wd": True}]
    if plain:
        groups.append({"params": plain, "weight_decay": 0.0, "apply_wd": False})
    return groups


def set_lr_wd(optimizer: torch.optim.Optimizer, lr: float, wd: float) -> None:
    """Write the step's lr into every group and its weight decay into the decayed groups."""
    for group in optimizer.param_groups:
        group["lr"] = lr
        if group.get("apply_wd", True):
            group["weight_decay"] = wd
