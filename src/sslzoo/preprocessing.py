"""Every mean, std and crop constant in one place: the registry's eval configs, the training views and publishing.

Two CIFAR-10 stds are in use and both are right for what they describe: the data's own per-channel std
(``CIFAR10_STD``, what the zoo's evaluation uses), and the ``(0.2023, 0.1994, 0.2010)`` that the APS, PatchMix and
ContrastiveCrop CIFAR code normalises with (``CIFAR10_STD_APS``), which their converted checkpoints and the training
views keep so that a model sees what its recipe trained it on.
"""

from __future__ import annotations

Triple = tuple[float, float, float]

IMAGENET_MEAN: Triple = (0.485, 0.456, 0.406)
IMAGENET_STD: Triple = (0.229, 0.224, 0.225)
CIFAR10_MEAN: Triple = (0.4914, 0.4822, 0.4465)
CIFAR10_STD: Triple = (0.2470, 0.2435, 0.2616)
CIFAR10_STD_APS: Triple = (0.2023, 0.1994, 0.2010)

# name -> (mean, std), as recipes spell them (views.mean_std)
NORMALIZATIONS: dict[str, tuple[Triple, Triple]] = {
    "cifar": (CIFAR10_MEAN, CIFAR10_STD_APS),
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
}

CIFAR_CROP_PCT = 1.0  # 32 px images are evaluated whole
IMAGENET_CROP_PCT = 0.875  # timm's and the papers' 224 / 256 centre crop
