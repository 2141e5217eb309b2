"""DINO with multi-crop: the teacher sees the two global crops, the student all crops; centred, sharpened targets.

The objective (centering, temperatures, multi-crop pairs) is ``training.objectives.dino``; the teacher follows the
student after every optimizer step (``ema_after_step``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

from ..errors import MethodConfigError
from ..frameworks.dino import DINO
from ..frameworks.heads import DINOHeadSpec
from .base import Method, StepContext, backbone_from_config, parse_settings
from ..objectives.dino import Center, dino_loss, teacher_temperature
from ..views.crops import ViewGeometry
from ..views.draws import RandomSource
from ..views.geometry import CropSpec, for_crops
from ..views.pipeline import ViewPipelineConfig
from ..views.presets import dino_global, dino_local


@dataclass
class DINOSettings:
    """DINO framework (official defaults; ADCLR's run script uses teacher_temp_final 0.07 over 30 epochs)."""

    head: dict = field(default_factory=dict)
    teacher_momentum: float = 0.996
    student_temp: float = 0.1
    teacher_temp: float = 0.04
    teacher_temp_final: float = 0.04
    teacher_temp_warmup_epochs: int = 0
    center_momentum: float = 0.9
    freeze_last_layer: int = 1
    global_scale: tuple[float, float] = (0.4, 1.0)
    local_crops_number: int = 0
    local_crops_size: int = 16
    local_crops_scale: tuple[float, float] = (0.05, 0.4)

    def temperature(self, epoch: int) -> float:
        return teacher_temperature(epoch, warmup_temp=self.teacher_temp, final_temp=self.teacher_temp_final,
                                   warmup_epochs=self.teacher_temp_warmup_epochs)


class DINOMethod(Method):
    """DINO with multi-crop: the teacher sees the global crops, the student all crops."""

    ema_after_step = True
    framework_name = "dino"
    settings_type = DINOSettings
    settings: DINOSettings
    framework: DINO

    def __init__(self, framework: DINO, settings: DINOSettings) -> None:
        super().__init__(framework, settings)
        self.center = Center(framework.head.last_layer.out_features, settings.center_momentum)

    @classmethod
    def build_framework(cls, cfg: dict[str, Any], settings: DINOSettings) -> DINO:
        if settings.local_crops_number:  # the smaller crops go through the same ViT (recorded in config.yaml)
            cfg.setdefault("arch_kwargs", {})["dynamic_img_size"] = True
        backbone = backbone_from_config(cfg)
        return DINO(backbone, parse_settings(DINOHeadSpec, settings.head, "framework.head"))

    def paper_views(self, mean: tuple[float, ...], std: tuple[float, ...]) -> list[ViewPipelineConfig]:
        s = self.settings
        configs = [dino_global(self.image_size, view=v, scale=tuple(s.global_scale), mean=mean, std=std)
                   for v in (1, 2)]
        return configs + [dino_local(s.local_crops_size, scale=tuple(s.local_crops_scale), mean=mean, std=std)]

    def base_views(self, pair: tuple[ViewPipelineConfig, ViewPipelineConfig], name: str) -> list[ViewPipelineConfig]:
        """The base's crops as the global views; the local crops keep their size and scale (they are the method)
        and take the colour steps of the base's first view."""
        s, view = self.settings, pair[0]
        if tuple(s.global_scale) != tuple(view.scale):
            raise MethodConfigError(
                f"framework.global_scale {tuple(s.global_scale)} differs from the crop scale {view.scale} of "
                f"views.base {name!r}: set framework.global_scale to {list(view.scale)} so the global crops are the "
                "base's.")
        return [*pair, replace(view, size=s.local_crops_size, scale=tuple(s.local_crops_scale))]

    def train(self, mode: bool = True) -> DINOMethod:
        super().train(mode)
        # only the teacher's backbone is held in eval mode (no drop path, like DINO's teacher); its head follows
        # ``mode``, as official DINO never calls teacher.eval(): a BN head (use_bn) normalises the teacher's batch,
        # since its running statistics are not part of the EMA
        self.framework.teacher_backbone.eval()
        return self

    def ema_base(self) -> float:
        return self.settings.teacher_momentum

    def after_backward(self, epoch: int) -> None:
        if epoch < self.settings.freeze_last_layer:
            self.framework.cancel_last_layer_grads()

    def crop_specs(self) -> list[CropSpec]:
        specs = super().crop_specs()
        n = self.settings.local_crops_number
        return specs + ([CropSpec.of("locals", self.pipelines[2].cfg, count=n)] if n else [])

    def finish_views(self, crops: dict[str, Tensor], geometry: dict[str, ViewGeometry], generator: RandomSource,
                     epoch: int) -> dict[str, Tensor]:
        out = super().finish_views(crops, geometry, generator, epoch)
        n = self.settings.local_crops_number
        if n:
            local = crops["locals"]
            out["locals"] = self.pipelines[2].photometric(local.flatten(0, 1), for_crops(generator, n)).view_as(local)
        return out

    def forward(self, inputs: dict[str, Tensor], substep: int, ctx: StepContext) -> dict[str, Tensor]:
        fw = self.framework
        globals_ = torch.cat([inputs["x1"], inputs["x2"]])
        teacher = fw.teacher(globals_).chunk(2)
        student = list(fw.student(globals_).chunk(2))
        if "locals" in inputs:
            local = inputs["locals"]
            student += list(fw.student(local.transpose(0, 1).flatten(0, 1)).chunk(local.shape[1]))
        temp = self.settings.temperature(ctx.epoch)
        loss = dino_loss([self.center.teacher_probs(t, temp) for t in teacher], student, self.settings.student_temp)
        self.center.update(teacher)
        return {"loss": loss, "teacher_temp": loss.new_tensor(temp)}
