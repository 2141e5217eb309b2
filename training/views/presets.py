"""The methods' named view recipes (:class:`ViewPipelineConfig` presets) and the bases a recipe can name.

Sizes are the papers' defaults; the methods replace ``size`` (and mean/std, from ``views.mean_std``) with the run's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from sslzoo.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from ..errors import ViewConfigError
from .pipeline import ViewPipelineConfig


def aps_cifar() -> ViewPipelineConfig:
    """APS on CIFAR (METHODS 1.2 step 1); both views use it."""
    return ViewPipelineConfig(size=32, scale=(0.15, 1.0), interpolation="bilinear", jitter=(0.4, 0.4, 0.4, 0.1))


def patchmix_cifar(view: int) -> ViewPipelineConfig:
    """PatchMix's asymmetric BYOL-style CIFAR views (METHODS 2.3): view 1 always blurred, view 2 may solarize."""
    if view not in (1, 2):
        raise ViewConfigError(f"PatchMix has views 1 and 2, got view={view}.")
    return ViewPipelineConfig(
        size=32, scale=(0.1, 1.0), interpolation="bicubic", jitter=(0.4, 0.4, 0.2, 0.1),
        blur_p=1.0 if view == 1 else 0.1, solarize_p=0.0 if view == 1 else 0.2,
        mean=IMAGENET_MEAN, std=IMAGENET_STD,
    )


def mocov3_cifar() -> ViewPipelineConfig:
    """The MoCo v3 baseline on 32-px CIFAR, both views: the ContrastiveCrop repository's CIFAR recipe with plain crops.

    RandomResizedCrop scale (0.2, 1), flip, ColorJitter(0.4, 0.4, 0.4, 0.1) p 0.8, grayscale 0.2, no blur (a blur
    wipes out a 32-px image), CIFAR normalisation. Sharing it with :func:`ccrop_cifar` means a ContrastiveCrop run
    differs from its baseline only in where the crops are placed.
    """
    return ViewPipelineConfig(size=32, scale=(0.2, 1.0), jitter=(0.4, 0.4, 0.4, 0.1))


def ccrop_cifar() -> ViewPipelineConfig:
    """ContrastiveCrop's CIFAR views (METHODS 3.3); its boxes come from ``contrastive_crop``, passed as ``boxes=``."""
    return mocov3_cifar()


def mocov3_imagenet() -> tuple[ViewPipelineConfig, ViewPipelineConfig]:
    """MoCo v3's ImageNet views (BYOL's asymmetric pair, ``moco-v3/main_moco.py``): RandomResizedCrop scale
    (0.08, 1), flip, ColorJitter(0.4, 0.4, 0.2, 0.1) p 0.8, grayscale 0.2; view 1 blurred (p 1), view 2 blurred
    (p 0.1) and solarised (p 0.2); ImageNet normalisation."""
    one = ViewPipelineConfig(size=224, scale=(0.08, 1.0), jitter=(0.4, 0.4, 0.2, 0.1), blur_p=1.0,
                             mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return one, replace(one, blur_p=0.1, solarize_p=0.2)


# Views a recipe can name as ``views.base`` to give every method the same two main views (the zoo, issue 5; the
# ImageNet recipes of the MoCo family): one view recipe for both views, or a pair.
BASE_VIEWS: dict[str, Callable[[], ViewPipelineConfig | tuple[ViewPipelineConfig, ViewPipelineConfig]]] = {
    "mocov3_cifar": mocov3_cifar, "aps_cifar": aps_cifar, "mocov3_imagenet": mocov3_imagenet}


def dino_global(size: int = 224, *, view: int = 1, scale: tuple[float, float] = (0.25, 1.0),
                mean: tuple[float, float, float] = IMAGENET_MEAN,
                std: tuple[float, float, float] = IMAGENET_STD) -> ViewPipelineConfig:
    """DINO's global crops: view 1 blurred (p 1), view 2 blurred (p 0.1) and solarised (p 0.2).

    The scale (0.25, 1) is the one the ADCLR/PQCL run script uses (METHODS 4.2).
    """
    if view not in (1, 2):
        raise ViewConfigError(f"DINO has global views 1 and 2, got view={view}.")
    return ViewPipelineConfig(
        size=size, scale=scale, interpolation="bicubic", jitter=(0.4, 0.4, 0.2, 0.1),
        blur_p=1.0 if view == 1 else 0.1, solarize_p=0.0 if view == 1 else 0.2, mean=mean, std=std,
    )


def dino_local(size: int = 96, *, scale: tuple[float, float] = (0.05, 0.4),
               mean: tuple[float, float, float] = IMAGENET_MEAN,
               std: tuple[float, float, float] = IMAGENET_STD) -> ViewPipelineConfig:
    """DINO's local crops: as the global crops, blurred with p 0.5, never solarised."""
    return replace(dino_global(size, scale=scale, mean=mean, std=std), blur_p=0.5, solarize_p=0.0)


def dino_query(size: int = 96, *, mean: tuple[float, float, float] = IMAGENET_MEAN,
               std: tuple[float, float, float] = IMAGENET_STD) -> ViewPipelineConfig:
    """ADCLR's query crops after cropping (METHODS 4.2): jitter, grayscale, blur p 0.5, no flip, no solarize."""
    return replace(dino_global(size, mean=mean, std=std), scale=(0.05, 0.25), flip_p=0.0, blur_p=0.5)
