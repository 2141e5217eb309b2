"""What the input pipeline hands the training loop: one rank's crops of one global batch, and their geometry."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..views.crops import ViewGeometry


@dataclass
class CropBatch:
    """This rank's share of a global batch: flipped crops in [0, 1] on the device, before the photometric steps.

    Attributes:
        indices: dataset indices (B,) of the images.
        crops: spec name -> float (B, 3, s, s) or (B, k, 3, s, s).
        geometry: spec name -> boxes in source pixels and flip flags.
        replaced: the unreadable files this batch replaced by others (streaming only), as 'path (reason)'.
    """

    indices: Tensor
    crops: dict[str, Tensor]
    geometry: dict[str, ViewGeometry]
    replaced: list[str]


def to_unit_float(images: Tensor, device: torch.device) -> Tensor:
    """uint8 (B, 3, H, W) -> float32 in [0, 1] on ``device`` (the copy happens on uint8, 4x fewer bytes)."""
    return images.to(device, non_blocking=True).float().div_(255.0)


def step_generator(seed: int, iteration: int, device: torch.device) -> torch.Generator:
    """The generator of one iteration's batch-level draws (PatchMix's mixing): the same on every rank."""
    return torch.Generator(device=device).manual_seed((seed * 1_000_003 + iteration) % (2**63 - 1))
