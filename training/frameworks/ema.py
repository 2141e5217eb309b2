"""The momentum (EMA) update of every framework: target <- m target + (1 - m) online, parameter by parameter.

A framework names its (online, target) module pairs (``ema_pairs``: MoCo v3's encoder and projector, DINO's
backbone and head); the momentum m follows ``training.schedules.ema_momentum``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


@torch.no_grad()
def ema_update(pairs: Iterable[tuple[nn.Module, nn.Module]], m: float) -> None:
    """theta_target <- m theta_target + (1 - m) theta_online for every parameter of every (online, target) pair."""
    for online, target in pairs:
        online_params, target_params = list(online.parameters()), list(target.parameters())
        if len(online_params) != len(target_params):
            raise ValueError(f"EMA pair of {type(online).__name__} and {type(target).__name__} with "
                             f"{len(online_params)} and {len(target_params)} parameters.")
        for s, t in zip(online_params, target_params):
            t.mul_(m).add_(s.detach(), alpha=1 - m)
