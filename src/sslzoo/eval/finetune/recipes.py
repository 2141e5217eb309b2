"""The fine-tuning recipes (protocol ``finetune:<recipe>``): their fields, the presets from the papers, overrides.

Plain data with no torch import, so the command line can list and check recipes before anything heavy loads;
:mod:`sslzoo.eval.finetune.run` runs them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from ...errors import SslzooError
from ...validation import int_at_least

TRAIN_CROPS = ("random-crop", "random-resized-crop")
NORMALIZATIONS = ("imagenet", "model")


class FinetuneError(SslzooError, ValueError):
    """A fine-tuning request that cannot run as given (bad recipe value, unusable dataset, conflicting output)."""


@dataclass(frozen=True)
class FinetuneRecipe:
    """The hyper-parameters of one fine-tuning protocol. Every field can be overridden from the command line.

    The learning rate is ``lr`` when set (absolute), else ``base_lr`` (or the entry of ``base_lr_by_width`` for the
    model's width) times ``batch_size / lr_batch_divisor`` (no scaling when the divisor is None).
    """

    epochs: int
    batch_size: int
    base_lr: float
    lr_batch_divisor: Optional[int]
    weight_decay: float
    layer_decay: Optional[float]  # None: one lr for every layer (layer decay 1)
    warmup_epochs: float
    warmup_lr: float
    min_lr: float
    drop_path: float
    train_crop: str  # "random-crop": RandomCrop(size, padding=4) instead of RandomResizedCrop (CIFAR recipes)
    normalize: str  # "imagenet": ImageNet mean/std; "model": the model's pretrained_cfg
    base_lr_by_width: Optional[Mapping[int, float]] = None  # embed_dim -> base lr (ViT-T/S/B values of a paper)
    lr: Optional[float] = None
    eval_crop_pct: Optional[float] = None  # None: the model's crop_pct; 1.0: the test images are not resized
    auto_augment: Optional[str] = "rand-m9-mstd0.5-inc1"
    mixup: float = 0.8
    cutmix: float = 1.0
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    smoothing: float = 0.1
    re_prob: float = 0.25
    source: str = ""

    def lr_for(self, embed_dim: int) -> float:
        """The peak learning rate for a model of width ``embed_dim`` at this recipe's batch size."""
        if self.lr is not None:
            return self.lr
        base = self.base_lr
        if self.base_lr_by_width:
            # the value of the nearest listed width at or below the model's (the smallest listed for narrower ones)
            widths = sorted(self.base_lr_by_width)
            base = self.base_lr_by_width[max([w for w in widths if w <= embed_dim] or [widths[0]])]
        return base * self.batch_size / self.lr_batch_divisor if self.lr_batch_divisor else base

    @property
    def mixup_active(self) -> bool:
        return self.mixup_prob > 0 and (self.mixup > 0 or self.cutmix > 0)

    def validate(self) -> None:
        problems = []
        problems += [f"{name} must be at least 1, got {getattr(self, name)}" for name in ("epochs", "batch_size")
                     if getattr(self, name) < 1]
        if self.lr is not None and not self.lr > 0:
            problems.append(f"lr must be greater than 0, got {self.lr}")
        if not self.base_lr > 0 or any(not v > 0 for v in (self.base_lr_by_width or {}).values()):
            problems.append(f"base_lr must be greater than 0, got {self.base_lr}")
        if not self.weight_decay >= 0 or not self.min_lr >= 0 or not self.warmup_lr >= 0:
            problems.append("weight_decay, min_lr and warmup_lr must be at least 0, got"
                            f" {self.weight_decay}, {self.min_lr}, {self.warmup_lr}")
        if self.mixup_active and self.batch_size % 2:
            problems.append(f"mixup/cutmix pair images within a batch, so batch_size must be even, got {self.batch_size}")
        if self.layer_decay is not None and not 0 < self.layer_decay <= 1:
            problems.append(f"layer_decay must be in (0, 1], got {self.layer_decay}")
        if self.warmup_epochs < 0:
            problems.append(f"warmup_epochs must be at least 0, got {self.warmup_epochs}")
        for name in ("drop_path", "mixup_prob", "mixup_switch_prob", "smoothing", "re_prob"):
            if not 0 <= getattr(self, name) <= 1:
                problems.append(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.train_crop not in TRAIN_CROPS:
            problems.append(f"train_crop must be one of {', '.join(TRAIN_CROPS)}, got {self.train_crop!r}")
        if self.normalize not in NORMALIZATIONS:
            problems.append(f"normalize must be one of {', '.join(NORMALIZATIONS)}, got {self.normalize!r}")
        if problems:
            raise FinetuneError("Invalid fine-tuning recipe: " + "; ".join(problems) + ".")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if d["base_lr_by_width"] is not None:
            d["base_lr_by_width"] = {str(k): v for k, v in d["base_lr_by_width"].items()}
        return d


_BEIT = FinetuneRecipe(
    epochs=100,
    batch_size=1024,  # 128 per GPU x 8 GPUs
    base_lr=5e-4,
    lr_batch_divisor=None,  # the lr is absolute in iBOT's run.sh
    weight_decay=0.05,
    layer_decay=0.65,
    warmup_epochs=5,
    warmup_lr=1e-6,
    min_lr=1e-6,
    drop_path=0.2,
    train_crop="random-resized-crop",
    normalize="model",
    source="BEiT-style fine-tuning of iBOT/ADCLR (ViT-B, run.sh); METHODS.md 4.3",
)

FINETUNE_RECIPES: dict[str, FinetuneRecipe] = {
    "aps-cifar": FinetuneRecipe(
        epochs=100,
        batch_size=128,
        base_lr=1e-3,
        base_lr_by_width={192: 2e-3, 384: 1e-3, 768: 5e-4},
        lr_batch_divisor=512,
        weight_decay=0.05,
        layer_decay=None,
        warmup_epochs=5,
        warmup_lr=1e-6,
        min_lr=1e-5,
        drop_path=0.0,  # the APS config sets 0.1, but its ViT ignores it; 0 is what was trained
        train_crop="random-crop",
        normalize="imagenet",
        eval_crop_pct=1.0,
        source="APS main_finetune.py, config/finetune/*.py; METHODS.md 1.6",
    ),
    "patchmix-cifar": FinetuneRecipe(
        epochs=100,
        batch_size=256,
        base_lr=5e-4,
        base_lr_by_width={192: 1e-3, 384: 5e-4, 768: 5e-4},
        lr_batch_divisor=256,
        weight_decay=0.05,
        layer_decay=0.75,
        warmup_epochs=10,
        warmup_lr=1e-6,
        min_lr=1e-5,
        drop_path=0.1,
        train_crop="random-crop",
        normalize="model",
        eval_crop_pct=1.0,
        source="PatchMix main_finetune.py, config/finetune/*.py; METHODS.md 2.7",
    ),
    "beit": _BEIT,
    "adclr": _BEIT,
    "default": FinetuneRecipe(
        epochs=100,
        batch_size=128,
        base_lr=5e-4,
        lr_batch_divisor=256,
        weight_decay=0.05,
        layer_decay=0.75,
        warmup_epochs=5,
        warmup_lr=1e-6,
        min_lr=1e-6,
        drop_path=0.1,
        train_crop="random-resized-crop",
        normalize="model",
        source="PatchMix's ImageNet values (lr 5e-4 x batch/256, layer decay 0.75) with BEiT's 5 warm-up epochs",
    ),
}


def resolve_recipe(name: str = "default", **overrides: Any) -> FinetuneRecipe:
    """A preset of :data:`FINETUNE_RECIPES` with fields replaced.

    Overrides that are None are ignored (not given). ``layer_decay=1`` turns layer decay off, ``lr_batch_divisor=0``
    the lr scaling, ``auto_augment="none"`` RandAugment; a ``base_lr`` replaces the per-width base lrs of the preset.
    """
    if name not in FINETUNE_RECIPES:
        raise FinetuneError(f"Unknown fine-tuning recipe {name!r}; choose one of {', '.join(FINETUNE_RECIPES)}.")
    known = {f.name for f in dataclasses.fields(FinetuneRecipe)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"Unknown recipe fields {unknown}; known: {', '.join(sorted(known))}.")
    given = {k: v for k, v in overrides.items() if v is not None}
    if given.get("layer_decay") == 1:
        given["layer_decay"] = None
    if given.get("lr_batch_divisor") == 0:
        given["lr_batch_divisor"] = None
    if str(given.get("auto_augment", "")).lower() in ("none", "off"):
        given["auto_augment"] = None
    if "base_lr" in given:
        given.setdefault("base_lr_by_width", None)
    recipe = dataclasses.replace(FINETUNE_RECIPES[name], **given)
    recipe.validate()
    return recipe


def check_finetune_options(recipe: str = "default", *, num_workers: Optional[int] = None,
                           limit_train: Optional[int] = None, limit_test: Optional[int] = None,
                           max_steps_per_epoch: Optional[int] = None, **overrides: Any) -> FinetuneRecipe:
    """Everything fine-tuning refuses before it reads data or builds a model (the CLI asks before importing torch).

    Returns the resolved recipe (:func:`resolve_recipe`).
    """
    resolved = resolve_recipe(recipe, **overrides)
    int_at_least("num_workers", num_workers, 0)
    for name, value in (("limit_train", limit_train), ("limit_test", limit_test),
                        ("max_steps_per_epoch", max_steps_per_epoch)):
        int_at_least(name, value)
    return resolved
