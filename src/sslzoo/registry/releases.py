"""The authors' released weights (METHODS.md 1.7-1.8, 2.8-2.9), as registry records.

Their numbers come from the authors' READMEs and are marked "reported": sslzoo has not measured them. No sha256 is
published for any of these files.
"""

from __future__ import annotations

from ..preprocessing import CIFAR10_MEAN, CIFAR10_STD_APS, IMAGENET_MEAN, IMAGENET_STD
from .schema import Result, Weights

APS_CIFAR_STD = CIFAR10_STD_APS  # the std APS pre-trains with (not the usual CIFAR-10 one)
_DATASETS = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "imagenet1k": "ImageNet-1K"}
_SIZE_LABELS = {"tiny": "ViT-T", "small": "ViT-S", "base": "ViT-B"}
_APS_FINETUNE = {  # (dataset, epochs) -> fine-tune top-1 per size [README@d761b9f]
    ("cifar10", 1600): {"tiny": 97.2, "small": 98.1, "base": 98.2},
    ("cifar10", 3200): {"tiny": 97.5, "small": 98.2, "base": 98.3},
    ("cifar100", 1600): {"tiny": 83.4, "small": 84.9, "base": 85.9},
    ("cifar100", 3200): {"tiny": 83.4, "small": 85.3, "base": 86.0},
}
_PATCHMIX = {  # (dataset, size) -> (pre-train epochs, fine-tune, linear, kNN top-1) [README@21ace32]
    ("imagenet1k", "small"): (300, 82.8, 77.4, 73.3),
    ("imagenet1k", "base"): (300, 84.1, 80.2, 76.2),
    ("cifar10", "tiny"): (800, 97.5, 94.4, 92.9),
    ("cifar10", "small"): (800, 98.1, 96.0, 94.6),
    ("cifar10", "base"): (800, 98.3, 96.6, 95.8),
    ("cifar100", "tiny"): (800, 84.9, 74.7, 68.8),
    ("cifar100", "small"): (800, 86.0, 78.7, 75.4),
    ("cifar100", "base"): (800, 86.0, 79.7, 75.7),
}
_REPORTED = "Reported by the authors' README, not measured by sslzoo."


def _aps_release(size: str, data: str, epochs: int) -> Weights:
    dataset = _DATASETS[data]
    return Weights(
        tag=f"authors_{data}_{epochs}ep",
        description=f"the authors' APS pre-training checkpoint, {_SIZE_LABELS[size]}/2 on {dataset}, {epochs} epochs",
        pretrain_data=dataset,
        pretrain_epochs=epochs,
        hf_hub_id="visresearch/aps",
        hf_filename=None,
        convert_from="aps",
        licence="cc-by-nc-4.0",
        mean=CIFAR10_MEAN,
        std=APS_CIFAR_STD,
        crop_pct=1.0,
        results=(
            Result(dataset, "finetune:aps-cifar", _APS_FINETUNE[(data, epochs)][size], source="reported",
                   notes=f"{_REPORTED} Best test top-1 over 100 fine-tuning epochs (METHODS.md 1.6)."),
        ),
        notes="The authors' README links only https://huggingface.co/visresearch/aps/tree/main and names no files: sslzoo"
        " looks for pretrain/<dataset>/<size>_<epochs>ep*.pth in the repository's file list (sslzoo.weights.release_listing),"
        " or takes the file as pretrained_file=."
        " Preprocessing: the CIFAR statistics APS pre-trains with (its fine-tuning uses ImageNet statistics).",
    )


def _patchmix_release(size: str, data: str) -> Weights:
    epochs, finetune, linear, knn = _PATCHMIX[(data, size)]
    imagenet = data == "imagenet1k"
    dataset = _DATASETS[data]
    tiny = " ViT-T was trained without a momentum encoder, so its base encoder is converted." if size == "tiny" else ""
    renamed = " Its fine-tuned file is named ...-84.6.pth in the README." if (data, size) == ("cifar100", "tiny") else ""
    return Weights(
        tag="authors_in1k" if imagenet else f"authors_{data}",
        description=f"the authors' PatchMix pre-training checkpoint, {_SIZE_LABELS[size]}/{16 if imagenet else 2} on"
        f" {dataset}, {epochs} epochs",
        pretrain_data=dataset,
        pretrain_epochs=epochs,
        hf_hub_id="visresearch/PatchMix",
        hf_filename=f"pretrain/{data}/vit-{size}-{epochs}-{knn}.pth",
        convert_from="patchmix",
        licence="cc-by-nc-4.0",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        crop_pct=0.875,  # Resize(int(size / 224 * 256)) then CenterCrop, as in the authors' kNN and linear evaluation
        results=(
            Result(dataset, f"finetune:patchmix-{'in1k' if imagenet else 'cifar'}", finetune, source="reported",
                   notes=f"{_REPORTED} Best epoch of 100 (METHODS.md 2.7).{renamed}"),
            Result(dataset, "linear:patchmix", linear, source="reported",
                   notes=f"{_REPORTED} Linear head on the CLS after the final LayerNorm, best of 100 epochs."),
            Result(dataset, "knn:patchmix", knn, source="reported",
                   notes=f"{_REPORTED} The authors' kNN feature is the CLS token through a randomly initialised"
                   " 1000-d linear head, not the raw CLS, and the README does not say which k (METHODS.md 2.7)."),
        ),
        notes="File path from the authors' README, whose kNN links point at the pre-training checkpoints (the accuracy"
        " in the file name is that kNN figure). The README has mistakes, so a name the repository lacks falls back to"
        " its file list: pretrain/<dataset>/vit-<size>-<epochs>-*.pth (sslzoo.weights.release_listing)."
        " The momentum encoder is converted, as the authors evaluate." + tiny,
    )


RELEASES: dict[str, tuple[Weights, ...]] = {
    **{
        f"aps_vit_{size}_patch2_32": tuple(_aps_release(size, data, epochs) for data, epochs in _APS_FINETUNE)
        for size in ("tiny", "small", "base")
    },
    **{
        f"patchmix_vit_{size}_patch2_32": tuple(_patchmix_release(size, data) for data in ("cifar10", "cifar100"))
        for size in ("tiny", "small", "base")
    },
    **{f"patchmix_vit_{size}_patch16_224": (_patchmix_release(size, "imagenet1k"),) for size in ("small", "base")},
}
