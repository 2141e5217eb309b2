"""A model's eval transform (timm's preprocessing config) applied to uint8 tensors, batched."""

from __future__ import annotations

import json
import math
from functools import partial
from typing import Any, Callable, Union

import torch
from PIL import Image

from .decode import pil_to_uint8

def _uint8_step(step: Callable) -> Callable:
    """torchvision's v2 resize of a uint8 tensor stays in uint8 (as PIL does) and is several times faster than the
    v1 ``Resize`` that timm builds, which resizes in float; measured against PIL's bicubic, v2 is also closer."""
    from torchvision import transforms
    from torchvision.transforms.v2 import functional as F

    if isinstance(step, transforms.Resize):
        return partial(
            F.resize, size=step.size, interpolation=step.interpolation, max_size=step.max_size, antialias=True
        )
    if isinstance(step, transforms.CenterCrop):
        return partial(F.center_crop, output_size=list(step.size))
    return step  # timm's own steps (ResizeKeepRatio, CenterCropOrPad, TrimBorder) take tensors as they are


class EvalTransform:
    """A model's eval transform (timm's ``resolve_model_data_config`` + ``create_transform``) on uint8 tensors.

    The geometric steps are those of timm's transform, applied to ``uint8 (3, H, W)`` or batched ``(B, 3, H, W)``
    tensors (resize and crop through torchvision's v2 functions, which keep uint8 as PIL does); the conversion to
    float and the normalisation follow. On PIL images it agrees with timm's transform to 2 intensity levels. Where
    the input already has the model's size and ``crop_pct`` keeps it (CIFAR models, ``crop_pct=1``), only the
    conversion runs.
    """

    def __init__(self, data_config: dict[str, Any]) -> None:
        from timm.data import create_transform
        from timm.data.transforms import MaybeToTensor, ToNumpy, ToTensor
        from torchvision import transforms

        self.config = {k: v for k, v in data_config.items() if v is not None}
        pipeline = create_transform(**self.config, is_training=False)
        skip = (MaybeToTensor, ToTensor, ToNumpy, transforms.ToTensor, transforms.PILToTensor, transforms.Normalize)
        self.geometry = [_uint8_step(t) for t in pipeline.transforms if not isinstance(t, skip)]
        _, h, w = self.config["input_size"]
        crop_pct = self.config.get("crop_pct") or 0.875  # timm's DEFAULT_CROP_PCT
        self._identity_size = (h, w) if (math.floor(h / crop_pct), math.floor(w / crop_pct)) == (h, w) else None
        self._scale = 1.0 / (255.0 * torch.tensor(self.config["std"], dtype=torch.float32).view(3, 1, 1))
        self._shift = torch.tensor(self.config["mean"], dtype=torch.float32).view(3, 1, 1) * 255.0

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.config["input_size"][1:])

    def describe(self) -> str:
        """A stable description, used in cache keys."""
        return json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in self.config.items()}, sort_keys=True)

    def __repr__(self) -> str:
        return f"EvalTransform({self.describe()})"

    def resize_crop(self, img: Union[torch.Tensor, Image.Image]) -> torch.Tensor:
        """The geometric steps only: the uint8 picture the model sees, before normalisation."""
        if isinstance(img, Image.Image):
            img = pil_to_uint8(img)
        if img.dtype != torch.uint8:
            raise TypeError(f"EvalTransform takes uint8 images or PIL images, got a {img.dtype} tensor")
        if tuple(img.shape[-2:]) != self._identity_size:
            for step in self.geometry:
                img = step(img)
        return img

    def normalize(self, img: torch.Tensor) -> torch.Tensor:
        """uint8 pixels already at the model's size -> the model's normalised float input."""
        return (img.float() - self._shift.to(img.device)) * self._scale.to(img.device)

    def __call__(self, img: Union[torch.Tensor, Image.Image]) -> torch.Tensor:
        return self.normalize(self.resize_crop(img))


def eval_transform(model: torch.nn.Module) -> EvalTransform:
    """The model's eval transform, resolved from its ``pretrained_cfg`` as timm does, for uint8 tensors."""
    from timm.data import resolve_model_data_config

    return EvalTransform(resolve_model_data_config(model))
