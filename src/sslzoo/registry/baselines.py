"""The baselines' public ImageNet-1K weights: DINO ViT-S/16, S/8, B/16, B/8 and MoCo v3 ViT-S/16, B/16 (300 epochs).

DINO's backbone files are plain state dicts in timm's names; timm republished the same weights as safetensors
(``timm/vit_*_224.dino``), which need no unpickling and come first, the official ``.pth`` second. MoCo v3's files are
training checkpoints (two encoders, projector and predictor), converted from the ``mocov3`` layout on first use (the
base encoder, as MoCo v3's transfer scripts take). No sha256 is published for any of them: each is pinned on first
use (:mod:`sslzoo.weights.pins`). The figures are the READMEs' (ImageNet-1K top-1), marked reported.
"""

from __future__ import annotations

from ..preprocessing import IMAGENET_MEAN, IMAGENET_STD
from .schema import Result, Weights

_DINO_FILES = {  # (size, patch) -> (official file stem, timm repo, epochs, kNN, linear) [facebookresearch/dino README]
    ("small", 16): ("dino_deitsmall16_pretrain", "timm/vit_small_patch16_224.dino", 800, 74.5, 77.0),
    ("small", 8): ("dino_deitsmall8_pretrain", "timm/vit_small_patch8_224.dino", 800, 78.3, 79.7),
    ("base", 16): ("dino_vitbase16_pretrain", "timm/vit_base_patch16_224.dino", 400, 76.1, 78.2),
    ("base", 8): ("dino_vitbase8_pretrain", "timm/vit_base_patch8_224.dino", 300, 77.4, 80.1),
}
_MOCOV3_FILES = {"small": ("vit-s-300ep", 73.2), "base": ("vit-b-300ep", 76.7)}  # [facebookresearch/moco-v3 README]
_LABEL = {"small": "ViT-S", "base": "ViT-B"}


def _in1k(**fields) -> Weights:
    """An ImageNet-1K entry with the evaluation preprocessing all of them share (timm's 224 / 256 centre crop)."""
    return Weights(tag="authors_in1k", pretrain_data="ImageNet-1K", mean=IMAGENET_MEAN, std=IMAGENET_STD,
                   crop_pct=0.875, **fields)


def _dino(size: str, patch: int) -> Weights:
    stem, repo, epochs, knn, linear = _DINO_FILES[(size, patch)]
    return _in1k(
        description=f"DINO's official {_LABEL[size]}/{patch} backbone (the teacher), ImageNet-1K, {epochs} epochs",
        pretrain_epochs=epochs,
        hf_hub_id=repo,
        hf_filename="model.safetensors",
        url=f"https://dl.fbaipublicfiles.com/dino/{stem}/{stem}.pth",
        licence="apache-2.0",
        results=(
            Result("ImageNet-1K", "knn:dino", knn, source="reported",
                   notes="DINO README: weighted 20-NN on the CLS token, T 0.07; not measured by sslzoo."),
            Result("ImageNet-1K", "linear:dino", linear, source="reported",
                   notes="DINO README: linear probe on the frozen backbone; not measured by sslzoo."),
        ),
        notes=f"First source: timm's safetensors copy of the same weights ({repo}); then the official file.",
    )


def _mocov3(size: str) -> Weights:
    stem, linear = _MOCOV3_FILES[size]
    return _in1k(
        description=f"MoCo v3's official {_LABEL[size]}/16 pre-training checkpoint, ImageNet-1K, 300 epochs",
        pretrain_epochs=300,
        url=f"https://dl.fbaipublicfiles.com/moco-v3/{stem}/{stem}.pth.tar",
        convert_from="mocov3",
        licence="cc-by-nc-4.0",
        results=(
            Result("ImageNet-1K", "linear:mocov3", linear, source="reported",
                   notes="MoCo v3 README: linear probe, 90 epochs; not measured by sslzoo."),
        ),
        notes="A training checkpoint: its base encoder is converted on first load (sslzoo convert --from mocov3).",
    )


BASELINES: dict[str, tuple[Weights, ...]] = {
    **{f"dino_vit_{size}_patch{patch}_224": (_dino(size, patch),) for size, patch in _DINO_FILES},
    **{f"mocov3_vit_{size}_patch16_224": (_mocov3(size),) for size in _MOCOV3_FILES},
}
