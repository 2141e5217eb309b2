"""The interface every method implements, and what the methods share: settings, views from the recipe, hooks.

A :class:`Method` is the ``nn.Module`` that DistributedDataParallel wraps: it owns the framework (MoCo v3 or DINO)
and any loss state (DINO centres), describes the views of this rank's batch in two stages (:meth:`Method.crop_specs`,
the geometric stage, runs where the images are decoded; :meth:`Method.finish_views` does the rest on the device) and
computes the loss terms of one optimizer step (:meth:`Method.forward`). The loop calls it at fixed points:
:meth:`Method.update_ema` before the forward pass or after the optimizer step (``ema_after_step``),
:meth:`Method.after_backward` between backward and the step, :meth:`Method.end_of_epoch` after each epoch.

A method builds itself from the resolved config (:meth:`Method.from_config`): its framework settings
(``framework:``, the dataclass ``settings_type``), its own settings (``method_args:``, ``args_type``), the framework
(:meth:`Method.build_framework`) and its views: the paper's (:meth:`Method.paper_views`) or, with ``views.base``,
the named base views for the two main views (:meth:`Method.base_views`); ``views.mean_std`` names the statistics
(``sslzoo.preprocessing.NORMALIZATIONS``) and ``views.overrides`` sets fields of every view.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor, nn

from sslzoo.preprocessing import NORMALIZATIONS
from ..errors import MethodConfigError
from ..frameworks.backbone import build_backbone
from ..views.color import normalize
from ..views.crops import ViewGeometry
from ..views.draws import RandomSource
from ..views.geometry import CropGuide, CropSpec, crop_in_memory, draw_geometry
from ..views.pipeline import ViewPipeline, ViewPipelineConfig
from ..views.presets import BASE_VIEWS


class EvalImages(Protocol):
    """The training set for passes without augmentation (ContrastiveCrop's box refresh)."""

    def __len__(self) -> int: ...

    def batches(self, indices: Tensor, batch_size: int, size: int) -> Iterator[Tensor]:
        """uint8 (b, 3, size, size) batches of the whole images ``indices``, in order."""


@dataclass
class StepContext:
    """What a step's loss needs beyond its inputs: the 0-based epoch and the iteration's generator."""

    epoch: int
    generator: torch.Generator


def parse_settings(cls: type, values: dict[str, Any] | None, where: str):
    """The dataclass ``cls`` from a recipe section; a key it does not have is a :class:`MethodConfigError`."""
    known = {f.name for f in fields(cls)}
    unknown = set(values or {}) - known
    if unknown:
        raise MethodConfigError(f"unknown {where} setting(s) {sorted(unknown)}; known: {sorted(known)}.")
    return cls(**(values or {}))


def backbone_from_config(cfg: dict[str, Any]):
    """The randomly initialised ViT of ``cfg['arch']`` with the method's ViT details, init and ``arch_kwargs``."""
    return build_backbone(cfg["arch"], method=cfg["method"], init=cfg.get("init", "timm"),
                          **dict(cfg.get("arch_kwargs") or {}))


class Method(nn.Module):
    """Views + framework + loss terms of one method."""

    substeps: ClassVar[int] = 1  # optimizer steps per image batch
    # DINO updates its teacher after the step, MoCo v3 its momentum encoder before the forward
    ema_after_step: ClassVar[bool] = False
    framework_name: ClassVar[str]  # the base framework, as a recipe's ``base:`` names it
    settings_type: ClassVar[type]  # the dataclass of the ``framework:`` section
    args_type: ClassVar[type | None] = None  # the dataclass of ``method_args:`` (None: the method has none)

    def __init__(self, framework: nn.Module, settings: Any) -> None:
        super().__init__()
        self.framework = framework
        self.settings = settings
        self.pipelines: list[ViewPipeline] = []

    # ------------------------------------------------------------------------------------------------ building

    @classmethod
    def from_config(cls, cfg: dict[str, Any], *, num_images: int, total_epochs: int,
                    device: torch.device) -> Method:
        """The method a resolved config describes, with its framework, fresh weights and views.

        ``num_images`` and ``total_epochs`` are for methods with per-image state (ContrastiveCrop's boxes).
        """
        base = cfg.get("base")
        if base is not None and base != cls.framework_name:
            raise MethodConfigError(f"method {cfg['method']!r} runs on {cls.framework_name}, not base {base!r}; "
                                    "only a plug-in method (ccrop) takes another base framework.")
        settings = parse_settings(cls.settings_type, cfg.get("framework"), f"framework ({cls.framework_name})")
        args = () if cls.args_type is None else (parse_settings(cls.args_type, cfg.get("method_args"),
                                                                "method_args"),)
        method = cls(cls.build_framework(cfg, settings), settings, *args)
        method.pipelines = method.view_pipelines(cfg.get("views"))
        return method

    @classmethod
    def build_framework(cls, cfg: dict[str, Any], settings: Any) -> nn.Module:
        raise NotImplementedError

    # --------------------------------------------------------------------------------------------------- views

    @property
    def image_size(self) -> int:
        """Side of the main views: the backbone's input size."""
        return self.framework.backbone.patch_embed.img_size[0]

    def paper_views(self, mean: tuple[float, ...], std: tuple[float, ...]) -> list[ViewPipelineConfig]:
        """The method's own views (its paper's), at :attr:`image_size`, normalised with ``mean`` and ``std``."""
        raise NotImplementedError

    def base_views(self, pair: tuple[ViewPipelineConfig, ViewPipelineConfig], name: str) -> list[ViewPipelineConfig]:
        """The views when the recipe names ``views.base``: that base's two views at :attr:`image_size` as the two main
        views, so that runs of different methods differ only in the method."""
        return list(pair)

    def view_pipelines(self, section: dict[str, Any] | None) -> list[ViewPipeline]:
        """The pipelines of a recipe's ``views`` section (``base``, ``mean_std``, ``overrides``)."""
        views = dict(section or {})
        mean_std = views.pop("mean_std", "cifar")
        overrides = views.pop("overrides", {}) or {}
        base = views.pop("base", None)
        if views:
            raise MethodConfigError(f"unknown views setting(s) {sorted(views)}; known: base, mean_std, overrides.")
        if mean_std not in NORMALIZATIONS:
            raise MethodConfigError(f"unknown views.mean_std {mean_std!r}; choose one of {sorted(NORMALIZATIONS)}.")
        mean, std = NORMALIZATIONS[mean_std]
        if base is None:
            configs = self.paper_views(mean, std)
        elif base in BASE_VIEWS:
            made = BASE_VIEWS[base]()
            pair = made if isinstance(made, tuple) else (made, made)
            configs = self.base_views(tuple(replace(v, size=self.image_size, mean=mean, std=std) for v in pair), base)
        else:
            raise MethodConfigError(f"unknown views.base {base!r}; choose one of {sorted(BASE_VIEWS)}.")
        try:
            return [ViewPipeline(replace(c, **{k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}))
                    for c in configs]
        except TypeError as e:
            raise MethodConfigError(f"unknown view setting in views.overrides: {e}; known: "
                                    f"{[f.name for f in fields(ViewPipelineConfig)]}.") from e

    @property
    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std) of the views, for evaluation passes on un-augmented images."""
        cfg = self.pipelines[0].cfg
        return tuple(cfg.mean), tuple(cfg.std)

    def normalize(self, images: Tensor) -> Tensor:
        mean, std = self.normalization
        return normalize(images, mean, std)

    def eval_data_config(self, backbone: nn.Module) -> dict[str, Any]:
        """The preprocessing the published backbone carries: the whole image resized to its input, the views' mean/std."""
        mean, std = self.normalization
        return dict(input_size=(3, *backbone.patch_embed.img_size), interpolation="bicubic", crop_pct=1.0,
                    crop_mode="center", mean=tuple(mean), std=tuple(std))

    def crop_specs(self) -> list[CropSpec]:
        """The crops of the views, in drawing order (the two main views; DINO adds local crops, ADCLR queries)."""
        return [CropSpec.of("x1", self.pipelines[0].cfg), CropSpec.of("x2", self.pipelines[1].cfg)]

    def crop_guide(self) -> CropGuide | None:
        """What places the guided crops (ContrastiveCrop's boxes), or None."""
        return None

    def finish_views(self, crops: dict[str, Tensor], geometry: dict[str, ViewGeometry], generator: RandomSource,
                     epoch: int) -> dict[str, Tensor]:
        """The inputs of :meth:`forward` from the flipped crops in [0, 1] of :meth:`crop_specs` and their geometry:
        the photometric steps of each view, and what the method derives from the geometry."""
        return {"x1": self.pipelines[0].photometric(crops["x1"], generator),
                "x2": self.pipelines[1].photometric(crops["x2"], generator)}

    def views(self, images: Tensor, indices: Tensor, generator: RandomSource, epoch: int) -> dict[str, Tensor]:
        """All stages of the views of a batch held in memory (images in [0, 1], their dataset ``indices``), from one
        random source (the training loop draws the geometric and photometric stages from separate streams)."""
        specs = self.crop_specs()
        geometry = draw_geometry(specs, images.shape[-2], images.shape[-1], generator, indices=indices, epoch=epoch,
                                 guide=self.crop_guide())
        return self.finish_views(crop_in_memory(images, geometry, specs), geometry, generator, epoch)

    # --------------------------------------------------------------------------------------------------- hooks

    def ema_base(self) -> float | None:
        """The EMA momentum at step 0 (the schedule goes to 1), or None: no momentum encoder or teacher."""
        raise NotImplementedError

    def update_ema(self, m: float) -> None:
        """Move the framework's momentum encoder or teacher towards the online modules."""
        self.framework.update_ema(m)

    @contextmanager
    def pooled_updates(self) -> Iterator[None]:
        """The loss state's updates (DINO centres: modules with ``deferred()``) of the forward passes inside the
        block, pooled into one update at its end: one optimizer step's micro-batches update it as one batch."""
        with ExitStack() as stack:
            for module in self.modules():
                if module is not self and callable(getattr(module, "deferred", None)):
                    stack.enter_context(module.deferred())
            yield

    def after_backward(self, epoch: int) -> None:
        """Hook between backward and the optimizer step."""

    def end_of_epoch(self, epoch: int, images: EvalImages, device: torch.device) -> None:
        """Hook after (0-based) ``epoch``, with the whole training set as ``images`` (un-augmented batches)."""

    def eval_backbone(self) -> nn.Module:
        """The encoder evaluated and published."""
        return self.framework.eval_backbone()

    def extra_state(self) -> dict:
        """Training state beyond the module's tensors, for the checkpoint."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        """Restore what :meth:`extra_state` returned."""
