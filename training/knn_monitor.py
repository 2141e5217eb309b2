"""The online kNN monitor: weighted kNN (k = 20, T = 0.07) of a held-out split against a fixed subset of train.

Features are the CLS of the evaluated encoder (momentum encoder or teacher when there is one) on the un-augmented
images, brought to the model's input by the eval transform the published model will carry (resize to its input
size, the views' mean and std), so a data set of any image size is monitored as it will be evaluated. The vote is
``sslzoo.eval.knn.knn_classify`` (the ``knn:dino`` protocol, on a small bank).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from sslzoo.data import EvalTransform
from sslzoo.eval.knn import knn_classify
from .data import ImageSet


@torch.no_grad()
def encode_images(vit: nn.Module, images: Tensor, transform: EvalTransform, device: torch.device,
                  batch_size: int = 512) -> Tensor:
    """Pooled features (N, D) of uint8 images through ``transform``, in eval mode (the module's mode is restored)."""
    was_training = vit.training
    vit.eval()
    try:
        feats = [vit(transform(images[i:i + batch_size].to(device))).float().cpu()
                 for i in range(0, images.shape[0], batch_size)]
    finally:
        vit.train(was_training)
    return torch.cat(feats)


class KnnMonitor:
    """Top-1 kNN accuracy (%) of a held-out split, measured on demand."""

    def __init__(self, bank: ImageSet, queries: ImageSet, *, k: int = 20, temperature: float = 0.07) -> None:
        self.bank, self.queries, self.k, self.temperature = bank, queries, k, temperature

    def __call__(self, vit: nn.Module, data_config: dict[str, Any], device: torch.device) -> float:
        """``data_config``: timm's preprocessing config of the model (input size, interpolation, crop, mean, std)."""
        transform = EvalTransform(data_config)
        bank = encode_images(vit, self.bank.images, transform, device)
        queries = encode_images(vit, self.queries.images, transform, device)
        pred = knn_classify(bank, self.bank.labels, queries, k=min(self.k, len(self.bank)),
                            temperature=self.temperature,
                            num_classes=int(max(self.bank.labels.max(), self.queries.labels.max())) + 1)
        return 100.0 * (pred == self.queries.labels).float().mean().item()
