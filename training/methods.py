"""The methods: which views, which framework and which loss terms. ``METHODS`` at the bottom is the one table.

A :class:`Method` is the ``nn.Module`` that DistributedDataParallel wraps: it owns the framework (MoCo v3 or DINO)
and any loss state (DINO centres), draws the views of a *global* batch (:meth:`Method.views`, sliced per rank by the
loop) and computes the loss terms of one optimizer step (:meth:`Method.forward`).

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
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch
from torch import Tensor, nn

from sslzoo.errors import SslzooError
from training import distributed
from training.contrastive_crop_plugin import CCropConfig, ContrastiveCrop
from training.frameworks.backbone import build_backbone
from training.frameworks.dino import DINO
from training.frameworks.heads import DINOHeadSpec, MLPSpec
from training.frameworks.mocov3 import MoCoV3
from training.objectives.dino import Center, cross_entropy, dino_loss, teacher_temperature
from training.objectives.infonce import hard_targets, info_nce
from training.views import augment
from training.views.adclr_queries import encode_queries_standalone, forward_with_queries, sample_query_crops
from training.views.aps import free_fraction, selective_subsets, sparse_subsets, subset_size
from training.views.augment import ViewPipeline, ViewPipelineConfig
from training.views.patchmix import mix_targets, patch_mix

MEAN_STD = {"cifar": (augment.CIFAR_MEAN, augment.CIFAR_STD), "imagenet": (augment.IMAGENET_MEAN, augment.IMAGENET_STD)}


class MethodConfigError(SslzooError, ValueError):
    """A method setting that does not exist or cannot work."""


@dataclass
class StepContext:
    """What a step's loss needs beyond its inputs: the 0-based epoch and the iteration's generator."""

    epoch: int
    generator: torch.Generator


def _settings(cls: type, values: dict[str, Any] | None, where: str):
    known = {f.name for f in fields(cls)}
    unknown = set(values or {}) - known
    if unknown:
        raise MethodConfigError(f"unknown {where} setting(s) {sorted(unknown)}; known: {sorted(known)}.")
    return cls(**(values or {}))


@dataclass
class MoCoSettings:
    """MoCo v3 framework: momentum m0 (None: no momentum encoder), tau, loss scale ('2tau' or a number), heads."""

    momentum: float | None = 0.99
    temperature: float = 0.2
    loss_scale: float | str = "2tau"
    projector: dict = field(default_factory=lambda: dict(hidden=4096, out=256, layers=3, last_bn=True))
    predictor: dict = field(default_factory=lambda: dict(hidden=4096, out=256, layers=2, last_bn=False))

    @property
    def scale(self) -> float:
        return 2 * self.temperature if self.loss_scale == "2tau" else float(self.loss_scale)


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


@dataclass
class APSSettings:
    """METHODS 1.2: sampling ratio, optimizer steps per batch (nsampling), power gamma; flip-aware overlap."""

    ratio: float = 0.25
    steps: int = 4
    gamma: float = 3.0
    ignore_flips: bool = False


@dataclass
class PatchMixSettings:
    """METHODS 2.2: mix number m, label smoothing."""

    m: int = 2
    smoothing: float = 0.0


@dataclass
class ADCLRSettings:
    """METHODS 4.1: query crops per image, their side and scale, lambda, and how the teacher encodes them."""

    num_queries: int = 1
    size: int = 12
    scale: tuple[float, float] = (0.05, 0.25)
    weight: float = 1.0
    teacher_queries: str = "appended"  # "appended" (paper, Figure 1) or "standalone" (released code)


class Method(nn.Module):
    """Views + framework + loss terms of one method."""

    substeps = 1  # optimizer steps per image batch
    ema_after_step = False  # DINO updates its teacher after the step, MoCo v3 its momentum encoder before the forward

    def __init__(self, framework: nn.Module, pipelines: list[ViewPipeline], crops: ContrastiveCrop | None) -> None:
        super().__init__()
        self.framework = framework
        self.pipelines = pipelines
        self.crops = crops

    @property
    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std) of the views, for evaluation passes on un-augmented images."""
        cfg = self.pipelines[0].cfg
        return tuple(cfg.mean), tuple(cfg.std)

    def normalize(self, images: Tensor) -> Tensor:
        mean, std = self.normalization
        return augment.normalize(images, mean, std)

    def eval_data_config(self, backbone: nn.Module) -> dict[str, Any]:
        """The preprocessing the published backbone carries: the whole image resized to its input, the views' mean/std."""
        mean, std = self.normalization
        return dict(input_size=(3, *backbone.patch_embed.img_size), interpolation="bicubic", crop_pct=1.0,
                    crop_mode="center", mean=tuple(mean), std=tuple(std))

    def crop_views(self, images: Tensor, indices: Tensor, generator: torch.Generator, epoch: int,
                   pipelines: list[ViewPipeline]) -> list[tuple[Tensor, augment.ViewGeometry]]:
        """One view per pipeline, with ContrastiveCrop's boxes when it is active."""
        out = []
        for pipeline in pipelines:
            boxes = None
            if self.crops is not None:
                boxes = self.crops.boxes(indices, images.shape[-2], images.shape[-1], epoch, generator)
            out.append(pipeline(images, generator, boxes=boxes))
        return out

    def views(self, images: Tensor, indices: Tensor, generator: torch.Generator, epoch: int) -> dict[str, Tensor]:
        (x1, _), (x2, _) = self.crop_views(images, indices, generator, epoch, self.pipelines[:2])
        return {"x1": x1, "x2": x2}

    def update_ema(self, m: float) -> None:
        raise NotImplementedError

    def ema_base(self) -> float | None:
        raise NotImplementedError

    def after_backward(self, epoch: int) -> None:
        """Hook between backward and the optimizer step."""

    def eval_backbone(self) -> nn.Module:
        return self.framework.eval_backbone()

    def extra_state(self) -> dict:
        return {"crops": self.crops.state_dict()} if self.crops is not None else {}

    def load_extra_state(self, state: dict) -> None:
        if self.crops is not None:
            self.crops.load_state_dict(state["crops"])


class MoCoV3Method(Method):
    """Symmetric MoCo v3 over two crops (also the ContrastiveCrop method)."""

    def __init__(self, framework: MoCoV3, pipelines: list[ViewPipeline], crops: ContrastiveCrop | None,
                 settings: MoCoSettings) -> None:
        super().__init__(framework, pipelines, crops)
        self.settings = settings

    def ema_base(self) -> float | None:
        return self.settings.momentum

    def update_ema(self, m: float) -> None:
        self.framework.update_momentum(m)

    def contrast(self, queries: Tensor, keys: Tensor, targets: Tensor | None = None) -> Tensor:
        """InfoNCE of local queries against the keys of every rank (hard diagonal targets by default)."""
        keys = distributed.all_gather_nograd(keys.detach().contiguous())
        if targets is None:
            targets = hard_targets(queries.shape[0], distributed.rank(), device=queries.device)
        return info_nce(queries, keys, targets, temperature=self.settings.temperature, scale=self.settings.scale)

    def symmetric(self, x1: Tensor, x2: Tensor, index1: Tensor | None = None,
                  index2: Tensor | None = None) -> dict[str, Tensor]:
        fw: MoCoV3 = self.framework
        z1, p1 = fw.query(x1, index1)
        z2, p2 = fw.query(x2, index2)
        if fw.has_momentum_encoder:
            z1, z2 = fw.keys(x1, index1), fw.keys(x2, index2)
        loss = self.contrast(p1, z2) + self.contrast(p2, z1)
        return {"loss": loss}

    def forward(self, inputs: dict[str, Tensor], substep: int, ctx: StepContext) -> dict[str, Tensor]:
        return self.symmetric(inputs["x1"], inputs["x2"])


class APSMethod(MoCoV3Method):
    """APS: T optimizer steps per batch, each on a sparse/selective pair of patch subsets of the same two views."""

    def __init__(self, framework: MoCoV3, pipelines: list[ViewPipeline], settings: MoCoSettings,
                 aps: APSSettings) -> None:
        super().__init__(framework, pipelines, None, settings)
        self.aps = aps
        self.substeps = aps.steps
        vit = framework.backbone
        self.grid = vit.patch_embed.grid_size[0]
        self.n = subset_size(self.grid, aps.ratio)

    def views(self, images: Tensor, indices: Tensor, generator: torch.Generator, epoch: int) -> dict[str, Tensor]:
        (x1, g1), (x2, g2) = self.crop_views(images, indices, generator, epoch, self.pipelines[:2])
        s1 = sparse_subsets(images.shape[0], self.grid, self.aps.ratio, self.aps.steps, generator, device=x1.device)
        s2 = [selective_subsets(free_fraction(g1, g2, s1[:, t], self.grid, ignore_flips=self.aps.ignore_flips),
                                self.n, self.aps.gamma, generator) for t in range(self.aps.steps)]
        return {"x1": x1, "x2": x2, "s1": s1, "s2": torch.stack(s2, dim=1)}

    def forward(self, inputs: dict[str, Tensor], substep: int, ctx: StepContext) -> dict[str, Tensor]:
        return self.symmetric(inputs["x1"], inputs["x2"], inputs["s1"][:, substep], inputs["s2"][:, substep])


class PatchMixMethod(MoCoV3Method):
    """PatchMix's three contrasts (not symmetrised), soft targets for the mixed queries."""

    def __init__(self, framework: MoCoV3, pipelines: list[ViewPipeline], settings: MoCoSettings,
                 mix: PatchMixSettings) -> None:
        super().__init__(framework, pipelines, None, settings)
        self.mix = mix
        self.patch = framework.backbone.patch_embed.patch_size[0]

    def forward(self, inputs: dict[str, Tensor], substep: int, ctx: StepContext) -> dict[str, Tensor]:
        fw: MoCoV3 = self.framework
        x1, x2 = inputs["x1"], inputs["x2"]
        mixed1, _ = patch_mix(x1, self.mix.m, self.patch, ctx.generator)  # within the local batch, as the paper
        mixed2, _ = patch_mix(x2, self.mix.m, self.patch, ctx.generator)
        _, q1 = fw.query(x1)
        _, q_mix = fw.query(mixed2)
        k1, k2, k_mix = fw.keys(x1), fw.keys(x2), fw.keys(mixed1)
        y_mix, y_mm = mix_targets(x1.shape[0], self.mix.m, rank=distributed.rank(),
                                  world_size=distributed.world_size(), smoothing=self.mix.smoothing, device=x1.device)
        orig = self.contrast(q1, k2)
        to_orig = self.contrast(q_mix, k1, y_mix)
        to_mix = self.contrast(q_mix, k_mix, y_mm)
        loss = orig + 0.5 * to_orig + 0.5 * to_mix
        return {"loss": loss, "orig": orig.detach(), "mix_orig": to_orig.detach(), "mix_mix": to_mix.detach()}


class DINOMethod(Method):
    """DINO with multi-crop: the teacher sees the global crops, the student all crops."""

    ema_after_step = True

    def __init__(self, framework: DINO, pipelines: list[ViewPipeline], crops: ContrastiveCrop | None,
                 settings: DINOSettings) -> None:
        super().__init__(framework, pipelines, crops)
        self.settings = settings
        self.center = Center(framework.head.last_layer.out_features, settings.center_momentum)

    def train(self, mode: bool = True) -> DINOMethod:
        super().train(mode)
        # only the teacher's backbone is held in eval mode (no drop path, like DINO's teacher); its head follows
        # ``mode``, as official DINO never calls teacher.eval(): a BN head (use_bn) normalises the teacher's batch,
        # since its running statistics are not part of the EMA
        self.framework.teacher_backbone.eval()
        return self

    def ema_base(self) -> float:
        return self.settings.teacher_momentum

    def update_ema(self, m: float) -> None:
        self.framework.update_teacher(m)

    def after_backward(self, epoch: int) -> None:
        if epoch < self.settings.freeze_last_layer:
            self.framework.cancel_last_layer_grads()

    def views(self, images: Tensor, indices: Tensor, generator: torch.Generator, epoch: int) -> dict[str, Tensor]:
        out = super().views(images, indices, generator, epoch)
        n = self.settings.local_crops_number
        if n:
            local = self.pipelines[2]
            crops = [local(images, generator)[0] for _ in range(n)]
            out["locals"] = torch.stack(crops, dim=1)
        return out

    def forward(self, inputs: dict[str, Tensor], substep: int, ctx: StepContext) -> dict[str, Tensor]:
        fw: DINO = self.framework
        globals_ = torch.cat([inputs["x1"], inputs["x2"]])
        teacher = fw.teacher(globals_).chunk(2)
        student = list(fw.student(globals_).chunk(2))
        if "locals" in inputs:
            local = inputs["locals"]
            student += list(fw.student(local.transpose(0, 1).flatten(0, 1)).chunk(local.shape[1]))
        temp = self.settings.temperature(ctx.epoch)
        loss = dino_loss([self.center.teacher_probs(t, temp) for t in teacher], student, self.settings.student_temp)
        self.center.update(teacher)
        return {"loss": loss}


class ADCLRMethod(DINOMethod):
    """DINO + lambda * the query loss on query crops appended to each global view behind a one-way mask.

    No parameters beyond DINO: the query tokens go through the same blocks and head; the only new state is the
    query centre (a buffer).
    """

    def __init__(self, framework: DINO, pipelines: list[ViewPipeline], settings: DINOSettings,
                 queries: ADCLRSettings) -> None:
        super().__init__(framework, pipelines, None, settings)
        if queries.teacher_queries not in ("appended", "standalone"):
            raise MethodConfigError(f"teacher_queries must be 'appended' or 'standalone', got "
                                    f"{queries.teacher_queries!r}.")
        self.queries = queries
        self.query_center = Center(framework.head.last_layer.out_features, settings.center_momentum)

    def views(self, images: Tensor, indices: Tensor, generator: torch.Generator, epoch: int) -> dict[str, Tensor]:
        out = super().views(images, indices, generator, epoch)
        q = self.queries
        out["queries"], _ = sample_query_crops(images, num_queries=q.num_queries, size=q.size, scale=tuple(q.scale),
                                               generator=generator, augment=self.pipelines[-1])
        return out

    def forward(self, inputs: dict[str, Tensor], substep: int, ctx: StepContext) -> dict[str, Tensor]:
        fw: DINO = self.framework
        views, queries = [inputs["x1"], inputs["x2"]], inputs["queries"]
        s_cls, s_query = [], []
        for x in views:
            cls, tokens = forward_with_queries(fw.backbone, x, queries)
            s_cls.append(fw.head(cls))
            s_query.append(fw.head(tokens))
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
        return {"loss": loss, "cls": cls_loss.detach(), "query": query_loss.detach()}


# --------------------------------------------------------------------------------------------------------- building

def _pipelines_for(name: str, size: int, cfg: dict[str, Any], dino: DINOSettings | None,
                   queries: ADCLRSettings | None) -> list[ViewPipeline]:
    views = dict(cfg.get("views") or {})
    mean, std = MEAN_STD[views.pop("mean_std", "cifar")]
    overrides = views.pop("overrides", {}) or {}
    base = views.pop("base", None)
    if views:
        raise MethodConfigError(f"unknown views setting(s) {sorted(views)}; known: base, mean_std, overrides.")
    if base is not None:
        configs = _base_configs(base, size, mean, std, dino, queries)
    elif dino is not None:
        configs = [augment.dino_global(size, view=v, scale=tuple(dino.global_scale), mean=mean, std=std)
                   for v in (1, 2)]
        configs.append(replace(augment.dino_global(dino.local_crops_size, scale=tuple(dino.local_crops_scale),
                                                   mean=mean, std=std), blur_p=0.5, solarize_p=0.0))
        if queries is not None:
            configs.append(augment.dino_query(queries.size, mean=mean, std=std))
    elif name == "aps":
        configs = [replace(augment.aps_cifar(), size=size, mean=mean, std=std)] * 2
    elif name == "patchmix":  # PatchMix's CIFAR views use ImageNet statistics (METHODS 2.3), whatever mean_std says
        configs = [replace(augment.patchmix_cifar(v), size=size) for v in (1, 2)]
    else:
        configs = [replace(augment.mocov3_cifar(), size=size, mean=mean, std=std)] * 2
    try:
        return [ViewPipeline(replace(c, **{k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}))
                for c in configs]
    except TypeError as e:
        raise MethodConfigError(f"unknown view setting in views.overrides: {e}; known: "
                                f"{[f.name for f in fields(ViewPipelineConfig)]}.") from e


def _base_configs(base: str, size: int, mean: tuple[float, ...], std: tuple[float, ...],
                  dino: DINOSettings | None, queries: ADCLRSettings | None) -> list[ViewPipelineConfig]:
    """``views.base``: one named augmentation for the two main views of any method, so that runs of different
    methods differ only in the method. DINO's local crops and ADCLR's queries keep their own size and scale (they
    are the method) and take the base's colour steps; queries are not flipped (METHODS 4.2)."""
    if base not in augment.BASE_VIEWS:
        raise MethodConfigError(f"unknown views.base {base!r}; choose one of {sorted(augment.BASE_VIEWS)}.")
    view = replace(augment.BASE_VIEWS[base](), size=size, mean=mean, std=std)
    if dino is None:
        return [view, view]
    if tuple(dino.global_scale) != tuple(view.scale):
        raise MethodConfigError(
            f"framework.global_scale {tuple(dino.global_scale)} differs from the crop scale {view.scale} of "
            f"views.base {base!r}: set framework.global_scale to {list(view.scale)} so the global crops are the base's.")
    configs = [view, view, replace(view, size=dino.local_crops_size, scale=tuple(dino.local_crops_scale))]
    if queries is not None:
        configs.append(replace(view, size=queries.size, scale=tuple(queries.scale), flip_p=0.0))
    return configs


def _backbone(cfg: dict[str, Any], name: str, framework: str):
    kwargs = dict(cfg.get("arch_kwargs") or {})
    method_for_arch = name if name in ("aps", "patchmix", "mocov3", "dino", "adclr", "ccrop") else framework
    return build_backbone(cfg["arch"], method=method_for_arch, init=cfg.get("init", "timm"), **kwargs)


def build_method(cfg: dict[str, Any], *, num_images: int, total_epochs: int, device: torch.device) -> Method:
    """The method a resolved config asks for, with its framework and fresh weights (global BN when distributed)."""
    name = cfg["method"]
    if name not in METHODS:
        raise MethodConfigError(f"unknown method {name!r}; choose one of {sorted(METHODS)}.")
    framework = cfg.get("base") or METHODS[name]
    args = cfg.get("method_args") or {}
    crops = None
    if name == "ccrop":
        crops = ContrastiveCrop(num_images, _settings(CCropConfig, args, "method_args"), total_epochs=total_epochs,
                                device=device)
    if framework == "dino":
        dino = _settings(DINOSettings, cfg.get("framework"), "framework (dino)")
        if dino.local_crops_number:
            cfg.setdefault("arch_kwargs", {})["dynamic_img_size"] = True
        backbone = _backbone(cfg, name, framework)
        size = backbone.patch_embed.img_size[0]
        fw = DINO(backbone, _settings(DINOHeadSpec, dino.head, "framework.head"))
        if name == "adclr":
            queries = _settings(ADCLRSettings, args, "method_args")
            method: Method = ADCLRMethod(fw, _pipelines_for(name, size, cfg, dino, queries), dino, queries)
        else:
            method = DINOMethod(fw, _pipelines_for(name, size, cfg, dino, None), crops, dino)
    else:
        moco = _settings(MoCoSettings, cfg.get("framework"), "framework (mocov3)")
        backbone = _backbone(cfg, name, framework)
        size = backbone.patch_embed.img_size[0]
        fw = MoCoV3(backbone, _settings(MLPSpec, moco.projector, "framework.projector"),
                    _settings(MLPSpec, moco.predictor, "framework.predictor"),
                    momentum_encoder=moco.momentum is not None)
        pipelines = _pipelines_for(name, size, cfg, None, None)
        if name == "aps":
            method = APSMethod(fw, pipelines, moco, _settings(APSSettings, args, "method_args"))
        elif name == "patchmix":
            method = PatchMixMethod(fw, pipelines, moco, _settings(PatchMixSettings, args, "method_args"))
        else:
            method = MoCoV3Method(fw, pipelines, crops, moco)
    method.to(device)
    if distributed.is_distributed():
        distributed.convert_global_bn(method, device)
    return method


# method name -> the framework it builds on (ccrop may set ``base: dino`` in its recipe)
METHODS: dict[str, str] = {
    "mocov3": "mocov3",
    "ccrop": "mocov3",
    "aps": "mocov3",
    "patchmix": "mocov3",
    "dino": "dino",
    "adclr": "dino",
}
