"""The data side of fine-tuning: the splits, the training transform of a recipe, and the model's recorded preprocessing."""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping, Optional, Union

import torch
from PIL import Image
from timm.data import auto_augment, create_transform
from timm.data.transforms import RandomResizedCropAndInterpolation
from torch.utils.data import Dataset, Subset
from torchvision import transforms

from ... import data as sslzoo_data
from ...preprocessing import IMAGENET_MEAN, IMAGENET_STD
from .recipes import FinetuneRecipe


def subset(dataset: Dataset, limit: Optional[int], seed: int) -> Dataset:
    """A seeded random subset of ``limit`` items (in their original order), for quick runs."""
    if limit is None or limit >= len(dataset):
        return dataset
    keep = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:limit].sort().values
    return Subset(dataset, keep.tolist())


def image_size(dataset: Dataset) -> Optional[tuple[int, int]]:
    """The common (H, W) of a decoded split; None where images are read one by one (sizes may differ)."""
    split = getattr(dataset, "split", None)
    return tuple(split.images.shape[-2:]) if split is not None else None


def train_transform(
    recipe: FinetuneRecipe, data_config: Mapping[str, Any], source_size: Optional[tuple[int, int]]
) -> Callable[[torch.Tensor], torch.Tensor]:
    """timm's training transform for the recipe, on the uint8 ``(3, H, W)`` tensors of :mod:`sslzoo.data`.

    For ``train_crop="random-crop"`` the first step (RandomResizedCrop) is replaced by ``RandomCrop(size, padding=4)``,
    as the CIFAR recipes do; images of another size are resized (shorter side) to the model's size first.
    """
    size = tuple(data_config["input_size"][1:])
    tf = create_transform(
        input_size=data_config["input_size"],
        is_training=True,
        auto_augment=recipe.auto_augment,
        interpolation=data_config["interpolation"],
        mean=data_config["mean"],
        std=data_config["std"],
        re_prob=recipe.re_prob,
        re_mode="pixel",
        re_count=1,
    )
    _allow_posterize_to_zero_bits(tf)
    if recipe.train_crop == "random-crop":
        if not isinstance(tf.transforms[0], RandomResizedCropAndInterpolation):
            raise RuntimeError(f"timm's training transform no longer starts with a RandomResizedCrop: {tf}")
        crop = [transforms.RandomCrop(size, padding=4)]
        if source_size != size:
            crop.insert(0, transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC))
        tf.transforms[0:1] = crop
    return transforms.Compose([transforms.ToPILImage(), tf])


def _posterize_any_bits(img: Any, bits_to_keep: int, **kwargs: Any) -> Any:
    """timm's posterize, with 0 bits giving the black image that Pillow returned before version 13 (which refuses)."""
    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)
    return auto_augment.posterize(img, bits_to_keep, **kwargs)


def _allow_posterize_to_zero_bits(tf: Any) -> None:
    """RandAugment ``inc1`` posterizes to 0 bits at magnitude 10 (about 2% of the m9-mstd0.5 magnitude draws)."""
    for step in tf.transforms:
        for op in getattr(step, "ops", []) if isinstance(step, auto_augment.RandAugment) else []:
            if op.aug_fn is auto_augment.posterize:
                op.aug_fn = _posterize_any_bits


def prepare_model_config(model: torch.nn.Module, recipe: FinetuneRecipe, classes: list[str]) -> None:
    """Record the preprocessing the fine-tuned model is trained with, and its class names, in ``pretrained_cfg``.

    The saved folder then carries them, so that its eval transform and label names are right without the recipe.
    """
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    if recipe.normalize == "imagenet":
        cfg.update(mean=IMAGENET_MEAN, std=IMAGENET_STD)
    if recipe.eval_crop_pct is not None:
        cfg["crop_pct"] = recipe.eval_crop_pct
    cfg.update(num_classes=len(classes), label_names=tuple(classes))
    model.pretrained_cfg = cfg
    model.default_cfg = cfg


class Mapped(Dataset):
    """``(transform(image), label)`` over a dataset of ``(image, label)``."""

    def __init__(self, base: Dataset, transform: Callable) -> None:
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        img, label = self.base[i]
        return self.transform(img), label


def open_splits(data: Union[str, os.PathLike]) -> tuple[Dataset, Dataset, list[str]]:
    train = sslzoo_data.open_dataset(data, "train")
    test = sslzoo_data.open_dataset(data, "test")
    sslzoo_data.check_classes(train.labels, test.labels, train.classes, data)
    return train, test, list(train.classes)
