"""The online kNN monitor: weighted kNN (k = 20, T = 0.07) of a held-out split against a fixed subset of train.

Features are the CLS of the evaluated encoder (momentum encoder or teacher when there is one) on the un-augmented,
normalised images; the vote is ``sslzoo.eval.knn.knn_classify`` (the ``knn:dino`` protocol, on a small bank).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from sslzoo.eval.knn import knn_classify
from training.data import ImageSet, to_unit_float


@torch.no_grad()
def encode_images(vit: nn.Module, images: Tensor, normalize: Callable[[Tensor], Tensor], device: torch.device,
                  batch_size: int = 512) -> Tensor:
    """Pooled features (N, D) of uint8 images, in eval mode (the module's mode is restored)."""
    was_training = vit.training
    vit.eval()
    try:
        feats = [vit(normalize(to_unit_float(images[i:i + batch_size], device))).float().cpu()
                 for i in range(0, images.shape[0], batch_size)]
    finally:
        vit.train(was_training)
    return torch.cat(feats)


class KnnMonitor:
    """Top-1 kNN accuracy (%) of a held-out split, measured on demand."""

    def __init__(self, bank: ImageSet, queries: ImageSet, *, k: int = 20, temperature: float = 0.07) -> None:
        self.bank, self.queries, self.k, self.temperature = bank, queries, k, temperature

    def __call__(self, vit: nn.Module, normalize: Callable[[Tensor], Tensor], device: torch.device) -> float:
        bank = encode_images(vit, self.bank.images, normalize, device)
        queries = encode_images(vit, self.queries.images, normalize, device)
        pred = knn_classify(bank, self.bank.labels, queries, k=self.k, temperature=self.temperature,
                            num_classes=int(max(self.bank.labels.max(), self.queries.labels.max())) + 1)
        return 100.0 * (pred == self.queries.labels).float().mean().item()
