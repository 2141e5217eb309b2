"""The methods: which views, which framework and which loss terms. :data:`METHODS` is the one table.

========  =========  ==========================================================================================
method    framework  views and loss
========  =========  ==========================================================================================
mocov3    MoCo v3    two crops; 2 tau [CE(q1, k2) + CE(q2, k1)] over all-gathered momentum keys
ccrop     MoCo v3    as mocov3, crops placed by ContrastiveCrop after its warm-up (``base: dino`` for DINO)
aps       MoCo v3    sparse view 1 + selective view 2 (65 of 257 tokens at patch 2), T optimizer steps per
                     batch, CE(p1, z2) + CE(p2, z1) with detached, all-gathered z, no momentum encoder
patchmix  MoCo v3    CE(q(x1), k(x2), I) + 1/2 CE(q(mix x2), k(x1), Y_mix) + 1/2 CE(q(mix x2), k(mix x1), Y_mm)
dino      DINO       two global crops (+ local crops), centred and sharpened teacher targets
adclr     DINO       DINO + lambda * query loss on query crops appended behind a one-way mask
========  =========  ==========================================================================================

One file per method (``training/methods/<name>.py``); the interface is :class:`training.methods.base.Method`.
A new method is a new file with its ``Method`` subclass and one line in :data:`METHODS` (plus its recipe in
``training/recipes/<name>.yaml``).
"""

from __future__ import annotations

from typing import Any

import torch

from .. import distributed
from ..errors import MethodConfigError
from .adclr import ADCLRMethod, ADCLRSettings
from .aps import APSMethod, APSSettings
from .base import Method, StepContext
from .ccrop import CCropConfig, CCropMethod, ContrastiveCrop
from .dino import DINOMethod, DINOSettings
from .mocov3 import MoCoSettings, MoCoV3Method
from .patchmix import PatchMixMethod, PatchMixSettings

# method name (``--method``, a recipe's ``method:``) -> the class that builds itself from the config
METHODS: dict[str, type[Method]] = {
    "mocov3": MoCoV3Method,
    "dino": DINOMethod,
    "aps": APSMethod,
    "patchmix": PatchMixMethod,
    "ccrop": CCropMethod,
    "adclr": ADCLRMethod,
}

__all__ = ["METHODS", "ADCLRMethod", "ADCLRSettings", "APSMethod", "APSSettings", "CCropConfig", "CCropMethod",
           "ContrastiveCrop", "DINOMethod", "DINOSettings", "Method", "MethodConfigError", "MoCoSettings",
           "MoCoV3Method", "PatchMixMethod", "PatchMixSettings", "StepContext", "build_method"]


def build_method(cfg: dict[str, Any], *, num_images: int, total_epochs: int, device: torch.device) -> Method:
    """The method a resolved config asks for, with its framework and fresh weights (global BN when distributed)."""
    name = cfg["method"]
    if name not in METHODS:
        raise MethodConfigError(f"unknown method {name!r}; choose one of {sorted(METHODS)}.")
    method = METHODS[name].from_config(cfg, num_images=num_images, total_epochs=total_epochs, device=device)
    method.to(device)
    if distributed.is_distributed():
        distributed.convert_global_bn(method, device)
    return method
