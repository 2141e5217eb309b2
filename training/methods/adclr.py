"""ADCLR (METHODS 4, the paper's pixel queries on DINO): DINO + lambda * a query loss on query crops.

The query crops are appended to each global view behind a one-way mask (``training.frameworks.adclr``); student
query tokens of view 1 are matched to the teacher's query tokens of view 2 and vice versa, with their own centre.
DINO's local crops (``framework.local_crops_number``), when a recipe asks for them, are taken exactly as DINO takes
them: the student encodes them and they join the CLS loss against the teacher's global views. The query side is set
in patch tokens (``method_args.tokens``) or pixels (``method_args.size``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from ..errors import MethodConfigError
from ..frameworks.dino import DINO
from .base import StepContext
from .dino import DINOMethod, DINOSettings
from ..objectives.dino import Center, cross_entropy, dino_loss
from ..frameworks.adclr import encode_queries_standalone, forward_with_queries
from ..views.crops import ViewGeometry
from ..views.draws import RandomSource
from ..views.geometry import CropSpec, for_crops
from ..views.pipeline import ViewPipelineConfig
from ..views.presets import dino_query

TEACHER_QUERIES = ("appended", "standalone")


@dataclass
class ADCLRSettings:
    """METHODS 4.1: query crops per image, their side and scale, lambda, and how the teacher encodes them.

    The side is given in patch tokens (``tokens``: 6 is the paper's 96-px query at patch 16, and 12 px at patch 2),
    so that a recipe works with any architecture; ``size`` (pixels, a multiple of the patch size) overrides it.
    """

    num_queries: int = 1
    tokens: int = 6
    size: int | None = None
    scale: tuple[float, float] = (0.05, 0.25)
    weight: float = 1.0
    teacher_queries: str = "appended"  # "appended" (paper, Figure 1) or "standalone" (released code)


def query_side(queries: ADCLRSettings, patch: tuple[int, int]) -> int:
    """The query crops' side in pixels: ``size`` when given (it must tile into patches), else ``tokens`` patches."""
    if queries.size is None:
        if not isinstance(queries.tokens, int) or queries.tokens < 1:
            raise MethodConfigError(f"method_args.tokens must be a whole number of patches (at least 1), got "
                                    f"{queries.tokens!r}.")
        return queries.tokens * patch[0]
    if not isinstance(queries.size, int) or queries.size < 1 or queries.size % patch[0] or queries.size % patch[1]:
        raise MethodConfigError(f"method_args.size {queries.size!r} px does not tile into the ViT's {patch[0]}-px "
                                f"patches: give a multiple of {patch[0]}, or set method_args.tokens (the side in "
                                "patches) instead.")
    return queries.size


class ADCLRMethod(DINOMethod):
    """DINO + lambda * the query loss on query crops appended to each global view behind a one-way mask.

    No parameters beyond DINO: the query tokens go through the same blocks and head; the only new state is the
    query centre (a buffer).
    """

    args_type = ADCLRSettings

    def __init__(self, framework: DINO, settings: DINOSettings, queries: ADCLRSettings) -> None:
        super().__init__(framework, settings)
        if queries.teacher_queries not in TEACHER_QUERIES:
            raise MethodConfigError(f"teacher_queries must be 'appended' or 'standalone', got "
                                    f"{queries.teacher_queries!r}.")
        self.queries = replace(queries, size=query_side(queries, framework.backbone.patch_embed.patch_size))
        self.query_center = Center(framework.head.last_layer.out_features, settings.center_momentum)

    def paper_views(self, mean: tuple[float, ...], std: tuple[float, ...]) -> list[ViewPipelineConfig]:
        return super().paper_views(mean, std) + [dino_query(self.queries.size, mean=mean, std=std)]

    def base_views(self, pair: tuple[ViewPipelineConfig, ViewPipelineConfig], name: str) -> list[ViewPipelineConfig]:
        """DINO's, plus query crops of their own size and scale with the colour steps of the base's first view,
        unflipped (METHODS 4.2)."""
        query = replace(pair[0], size=self.queries.size, scale=tuple(self.queries.scale), flip_p=0.0)
        return super().base_views(pair, name) + [query]

    def crop_specs(self) -> list[CropSpec]:
        q = self.queries
        # RandomResizedCrop's law at the query size and scale; no flip (the released code's query crops)
        return super().crop_specs() + [CropSpec("queries", q.size, tuple(q.scale), interpolation="bicubic",
                                                flip_p=0.0, count=q.num_queries)]

    def finish_views(self, crops: dict[str, Tensor], geometry: dict[str, ViewGeometry], generator: RandomSource,
                     epoch: int) -> dict[str, Tensor]:
        out = super().finish_views(crops, geometry, generator, epoch)
        queries = crops["queries"]
        draws = for_crops(generator, self.queries.num_queries)
        out["queries"] = self.pipelines[-1].photometric(queries.flatten(0, 1), draws).view_as(queries)
        return out

    def forward(self, inputs: dict[str, Tensor], substep: int, ctx: StepContext) -> dict[str, Tensor]:
        fw = self.framework
        views, queries = [inputs["x1"], inputs["x2"]], inputs["queries"]
        s_cls, s_query = [], []
        for x in views:
            cls, tokens = forward_with_queries(fw.backbone, x, queries)
            s_cls.append(fw.head(cls))
            s_query.append(fw.head(tokens))
        if "locals" in inputs:  # DINO's local crops: student only, in the CLS loss against the teacher's globals
            local = inputs["locals"]
            s_cls += list(fw.student(local.transpose(0, 1).flatten(0, 1)).chunk(local.shape[1]))
        with torch.no_grad():
            if self.queries.teacher_queries == "appended":
                pairs = [forward_with_queries(fw.teacher_backbone, x, queries) for x in views]
                t_cls = [fw.teacher_head(c) for c, _ in pairs]
                t_query = [fw.teacher_head(t) for _, t in pairs][::-1]  # student view v <- teacher's other view
            else:
                t_cls = [fw.teacher(x) for x in views]
                t_query = [fw.teacher_head(encode_queries_standalone(fw.teacher_backbone, queries))] * 2
        temp = self.settings.temperature(ctx.epoch)
        cls_loss = dino_loss([self.center.teacher_probs(t, temp) for t in t_cls], s_cls, self.settings.student_temp)
        query_loss = sum(cross_entropy(self.query_center.teacher_probs(t, temp), s, self.settings.student_temp)
                         for t, s in zip(t_query, s_query)) / len(views)
        self.center.update(t_cls)
        self.query_center.update(t_query[:1] if self.queries.teacher_queries == "standalone" else t_query)
        loss = cls_loss + self.queries.weight * query_loss
        return {"loss": loss, "cls": cls_loss.detach(), "query": query_loss.detach(),
                "teacher_temp": loss.new_tensor(temp)}
