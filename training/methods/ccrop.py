"""ContrastiveCrop (METHODS 3) as a plug-in: a per-image box bank, refreshed from the ViT's heat maps, places the
crops of the two main views of MoCo v3 (the default) or DINO (``base: dino`` in the recipe).

Warm-up epochs use plain RandomResizedCrop; afterwards both views' crops come from ``center_suppressed_boxes``
inside each image's box. At the end of the epochs that ``should_update_boxes`` names, an eval pass of the online
backbone over the whole training set, unshuffled and without augmentation, recomputes the boxes; under DDP every
rank handles a contiguous shard and the boxes are all-gathered. The boxes are part of the checkpoint. The maths
(boxes, Beta draws, the bank) is ``training.views.contrastive_crop``; the heat maps are
``training.frameworks.ccrop_heatmaps``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from .. import distributed
from ..data.batch import to_unit_float
from ..errors import MethodConfigError
from ..frameworks.ccrop_heatmaps import vit_heatmaps
from .base import EvalImages, Method
from .dino import DINOMethod
from .mocov3 import MoCoV3Method
from ..views.contrastive_crop import BoxBank, BoxGuide, heatmap_boxes, should_update_boxes
from ..views.geometry import CropSpec


@dataclass
class CCropConfig:
    """METHODS 3.1-3.2 and 3.7: warm-up and update interval in epochs, heat-map threshold, Beta alpha."""

    warmup_epochs: int = 100
    interval: int = 100
    threshold: float = 0.4
    alpha: float = 0.6
    scale: tuple[float, float] = (0.2, 1.0)
    heatmap: str = "token_norm"
    batch_size: int = 256


class ContrastiveCrop:
    """The box bank, the guide that crops with it, and the box refresh."""

    def __init__(self, num_images: int, cfg: CCropConfig, *, total_epochs: int) -> None:
        self.cfg, self.total_epochs = cfg, total_epochs
        self.bank = BoxBank(num_images)
        self.guide = BoxGuide(self.bank, cfg.warmup_epochs, tuple(cfg.scale), cfg.alpha)
        self.updates = 0

    @torch.no_grad()
    def end_of_epoch(self, epoch: int, vit: VisionTransformer, images: EvalImages,
                     normalize: Callable[[Tensor], Tensor], device: torch.device) -> bool:
        """Recompute every box if (0-based) ``epoch`` is an update epoch; returns whether it did."""
        if not should_update_boxes(epoch + 1, self.cfg.warmup_epochs, self.cfg.interval, self.total_epochs):
            return False
        n, world, rank = len(images), distributed.world_size(), distributed.rank()
        shard = math.ceil(n / world)
        mine = torch.arange(rank * shard, min((rank + 1) * shard, n))
        out = torch.zeros(shard, 4, device=device)
        size = vit.patch_embed.img_size[0]
        start = 0
        for batch in images.batches(mine, self.cfg.batch_size, size):
            x = normalize(to_unit_float(batch, device))
            maps = vit_heatmaps(vit, x, kind=self.cfg.heatmap)
            out[start:start + len(x)] = heatmap_boxes(maps, threshold=self.cfg.threshold, out_size=x.shape[-2:])
            start += len(x)
        boxes = distributed.all_gather_nograd(out)[:n]
        self.bank.update(torch.arange(n), boxes)
        self.updates += 1
        return True

    def state_dict(self) -> dict:
        return {"bank": self.bank.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.bank.load_state_dict(state["bank"])
        self.updates = int(state["updates"])


class _ContrastiveCropPlugin:
    """What ContrastiveCrop adds to a method: the boxes of its main views, the refresh, the boxes' checkpoint."""

    args_type = CCropConfig
    crops: ContrastiveCrop
    framework: nn.Module
    normalize: Callable[[Tensor], Tensor]

    def __init__(self, framework: nn.Module, settings: Any, crops: CCropConfig) -> None:
        super().__init__(framework, settings)  # the framework's method
        self.crop_settings = crops

    @classmethod
    def from_config(cls, cfg: dict[str, Any], *, num_images: int, total_epochs: int,
                    device: torch.device) -> Method:
        method = super().from_config(cfg, num_images=num_images, total_epochs=total_epochs, device=device)
        method.crops = ContrastiveCrop(num_images, method.crop_settings, total_epochs=total_epochs)
        return method

    def crop_specs(self) -> list[CropSpec]:
        return [replace(spec, guided=True) if spec.name in ("x1", "x2") else spec for spec in super().crop_specs()]

    def crop_guide(self) -> BoxGuide:
        return self.crops.guide

    def end_of_epoch(self, epoch: int, images: EvalImages, device: torch.device) -> None:
        self.crops.end_of_epoch(epoch, self.framework.backbone, images, self.normalize, device)

    def extra_state(self) -> dict:
        return {"crops": self.crops.state_dict()}

    def load_extra_state(self, state: dict) -> None:
        self.crops.load_state_dict(state["crops"])


class CCropDINOMethod(_ContrastiveCropPlugin, DINOMethod):
    """ContrastiveCrop on DINO (``base: dino``): the boxes place the two global crops; local crops are plain."""


class CCropMethod(_ContrastiveCropPlugin, MoCoV3Method):
    """ContrastiveCrop on MoCo v3 (the recipe's default), or on DINO with ``base: dino``."""

    @classmethod
    def from_config(cls, cfg: dict[str, Any], *, num_images: int, total_epochs: int,
                    device: torch.device) -> Method:
        base = cfg.get("base") or cls.framework_name
        if base not in ON_FRAMEWORK:
            raise MethodConfigError(f"ContrastiveCrop runs on base {sorted(ON_FRAMEWORK)}, got {base!r}.")
        if ON_FRAMEWORK[base] is not cls:
            return ON_FRAMEWORK[base].from_config(cfg, num_images=num_images, total_epochs=total_epochs, device=device)
        return super().from_config(cfg, num_images=num_images, total_epochs=total_epochs, device=device)


# ``base:`` -> ContrastiveCrop on that framework
ON_FRAMEWORK: dict[str, type[Method]] = {"mocov3": CCropMethod, "dino": CCropDINOMethod}
