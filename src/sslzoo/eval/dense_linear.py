"""``dense:linear``: a linear classifier per patch token on cached frozen features (DINOv2's linear segmentation).

Each learning rate is one head of a batched weight ``(H, D, C)``; the loss is the sum of the heads' losses, so every
head gets exactly its own gradient and one einsum per step trains them all. A head's logits ``(C, h, w)`` are
upsampled bilinearly to the mask at the input size and scored by cross-entropy with ignore index 255. Training is
SGD with momentum 0.9 and a cosine schedule over mini-batches of images; the head with the best mIoU on a seeded
held-out slice of the train images is the one reported on val.

``batchnorm=True`` standardises each feature channel with the mean and variance of the fit images' patches: a
BatchNorm layer in front of the classifier, with its statistics frozen and its affine part left to the linear layer.
"""

from __future__ import annotations

import math
import sys
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data.segmentation import IGNORE_INDEX
from ..validation import all_positive, int_at_least
from .feature_store import release_rows
from .seg_metrics import confusion_matrix, scores_from_confusion

DEFAULT_LRS = (0.003, 0.01, 0.03, 0.1, 0.3)
DEFAULT_EPOCHS = 10
DEFAULT_BATCH = 32  # images per step
HELD_OUT = 0.1
_STATS_BLOCK = 256  # images per block when the channel statistics are gathered


def check_linear_options(*, lrs: Optional[Sequence[float]] = None, epochs: Optional[int] = None,
                         batch_size: Optional[int] = None) -> None:
    all_positive("lrs", lrs)
    int_at_least("epochs", epochs)
    int_at_least("batch_size", batch_size)


def held_out_split(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Image indices ``(fit, held_out)``: a seeded ``fraction`` of the images (at least one, where there are two)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_held = min(n - 1, max(1, round(fraction * n))) if fraction > 0 and n > 1 else 0
    return perm[n_held:].sort().values, perm[:n_held].sort().values


def channel_stats(features: torch.Tensor, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of each channel over every patch of ``images``, gathered block by block (bounded memory)."""
    width = features.shape[-1]
    total = torch.zeros(width, dtype=torch.float64)
    square = torch.zeros(width, dtype=torch.float64)
    count = 0
    for start in range(0, len(images), _STATS_BLOCK):
        idx = images[start : start + _STATS_BLOCK]
        x = features[idx].reshape(-1, width).double()
        total += x.sum(0)
        square += (x * x).sum(0)
        count += len(x)
    release_rows(features, 0, len(features))
    mean = total / count
    std = (square / count - mean * mean).clamp_min(0).sqrt().clamp_min(1e-6)
    return mean.float(), std.float()


def bilinear_matrix(out_size: int, in_size: int) -> torch.Tensor:
    """``(out, in)`` weights of 1-D bilinear resampling as ``F.interpolate(align_corners=False)`` computes it."""
    src = ((torch.arange(out_size, dtype=torch.float64) + 0.5) * (in_size / out_size) - 0.5).clamp_min(0)
    low = src.floor().long().clamp_max(in_size - 1)
    high = (low + 1).clamp_max(in_size - 1)
    frac = src - low
    matrix = torch.zeros(out_size, in_size, dtype=torch.float64)
    matrix.index_put_((torch.arange(out_size), low), 1 - frac, accumulate=True)
    matrix.index_put_((torch.arange(out_size), high), frac, accumulate=True)
    return matrix.float()


def upsample_logits(logits: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Bilinear upsampling of ``(..., h, w)`` to ``(..., H, W)`` as two matrix products (``rows (H, h)``, ``cols
    (W, w)``): the same numbers as ``F.interpolate``, and a backward pass that is two more products, several times
    cheaper on CPU than the interpolation's own backward."""
    return rows @ logits @ cols.T


class LinearHeads:
    """``H`` linear classifiers over ``D`` channels, one per learning rate, with the input standardisation."""

    def __init__(self, width: int, num_classes: int, lrs: Sequence[float], mean: torch.Tensor, std: torch.Tensor):
        self.lrs = list(lrs)
        self.weight = torch.zeros(len(lrs), width, num_classes, requires_grad=True)
        self.bias = torch.zeros(len(lrs), num_classes, requires_grad=True)
        self.mean, self.std = mean, std

    def logits(self, grid: torch.Tensor, head: Optional[int] = None) -> torch.Tensor:
        """``(B, h, w, D)`` -> ``(B, H, C, h, w)``, or ``(B, C, h, w)`` for one ``head``.

        The standardisation is folded into the weights (``W / std``, ``b - (mean / std) W``), so the features are
        used as they are stored.
        """
        weight = self.weight / self.std[:, None]
        bias = self.bias - torch.einsum("d,kdc->kc", self.mean / self.std, self.weight)
        if head is not None:
            return torch.einsum("bhwd,dc->bchw", grid, weight[head]) + bias[head][None, :, None, None]
        return torch.einsum("bhwd,kdc->bkchw", grid, weight) + bias[None, :, :, None, None]


def train_linear_heads(
    features: torch.Tensor, masks: torch.Tensor, fit: torch.Tensor, num_classes: int, *,
    lrs: Sequence[float] = DEFAULT_LRS, epochs: int = DEFAULT_EPOCHS, batch_size: int = DEFAULT_BATCH,
    batchnorm: bool = True, seed: int = 0, progress: bool = True,
) -> LinearHeads:
    """Train one head per learning rate on the ``fit`` images of ``features (N, h, w, D)`` / ``masks (N, S, S)``."""
    width = features.shape[-1]
    if batchnorm:
        mean, std = channel_stats(features, fit)
    else:
        mean, std = torch.zeros(width), torch.ones(width)
    heads = LinearHeads(width, num_classes, lrs, mean, std)
    lr0 = torch.tensor(list(lrs)).view(-1, 1, 1)
    mom_w, mom_b = torch.zeros_like(heads.weight), torch.zeros_like(heads.bias)
    g = torch.Generator().manual_seed(seed)
    steps = epochs * math.ceil(len(fit) / batch_size)
    size = tuple(masks.shape[-2:])
    rows, cols = bilinear_matrix(size[0], features.shape[1]), bilinear_matrix(size[1], features.shape[2])
    bar = tqdm(total=steps, unit="step", desc="dense:linear", disable=not progress or not sys.stderr.isatty())
    step = 0
    for _ in range(epochs):
        order = fit[torch.randperm(len(fit), generator=g)]
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size].sort().values
            logits = heads.logits(features[idx])  # (B, H, C, h, w)
            b, h = logits.shape[:2]
            up = upsample_logits(logits, rows, cols).flatten(0, 1)  # (B * H, C, S, S), a view
            target = masks[idx].long()[:, None].expand(b, h, *size).flatten(0, 1)
            # mean over the heads' pixels, times H: the sum of each head's mean loss
            loss = F.cross_entropy(up, target, ignore_index=IGNORE_INDEX) * h
            grad_w, grad_b = torch.autograd.grad(loss, [heads.weight, heads.bias])
            lr = lr0 * 0.5 * (1.0 + math.cos(math.pi * step / steps))
            with torch.no_grad():
                mom_w.mul_(0.9).add_(grad_w)
                mom_b.mul_(0.9).add_(grad_b)
                heads.weight -= lr * mom_w
                heads.bias -= lr.view(-1, 1) * mom_b
            step += 1
            bar.update()
        release_rows(features, 0, len(features))
    bar.close()
    heads.weight.requires_grad_(False)
    heads.bias.requires_grad_(False)
    return heads


def held_out_miou(heads: LinearHeads, features: torch.Tensor, masks: torch.Tensor, held: torch.Tensor,
                  num_classes: int, block: int = 64) -> list[float]:
    """mIoU (%) of every head on the held-out train images, at the masks' input size."""
    conf = torch.zeros(len(heads.lrs), num_classes, num_classes, dtype=torch.int64)
    with torch.no_grad():
        for start in range(0, len(held), block):
            idx = held[start : start + block]
            logits = heads.logits(features[idx])
            for h in range(len(heads.lrs)):
                pred = F.interpolate(logits[:, h], size=tuple(masks.shape[-2:]), mode="bilinear",
                                     align_corners=False).argmax(1)
                conf[h] += confusion_matrix(pred, masks[idx], num_classes)
    return [scores_from_confusion(c)["miou"] for c in conf]


def linear_scores_of(heads: LinearHeads, head: int, val_features: torch.Tensor) -> Callable[[int, int], torch.Tensor]:
    """``(start, stop) -> (B, C, h, w)`` logits of val images ``start .. stop`` from the chosen head."""

    def scores(start: int, stop: int) -> torch.Tensor:
        with torch.no_grad():
            out = heads.logits(val_features[start:stop], head)
        release_rows(val_features, start, stop)
        return out

    return scores
