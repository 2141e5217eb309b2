"""Segmentation scores: one confusion matrix over a whole split, at the masks' full resolution.

Per-patch class scores ``(C, h, w)`` are upsampled bilinearly (``align_corners=False``) to the size of the original
mask, the argmax is the predicted class of each pixel, and every pixel whose ground truth is not 255 adds one count to
``confusion[truth, prediction]``. From the one matrix: IoU of class c = TP / (TP + FP + FN); mIoU = the mean IoU over
the classes present in the ground truth (a class never seen in the split is left out, not counted as 0 or 1); pixel
accuracy = correct pixels / scored pixels.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F

from ..data.segmentation import IGNORE_INDEX, SegmentationDataset


def confusion_matrix(pred: torch.Tensor, truth: torch.Tensor, num_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """``int64 (C, C)``: rows the true class, columns the predicted one; ``ignore_index`` pixels are not counted."""
    truth = truth.reshape(-1).long()
    pred = pred.reshape(-1).long()
    keep = truth != ignore_index
    return torch.bincount(truth[keep] * num_classes + pred[keep], minlength=num_classes**2).view(
        num_classes, num_classes)


def scores_from_confusion(conf: torch.Tensor) -> dict:
    """``{"miou", "pixel_acc"}`` in percent, ``"iou"`` per class (None where the class is absent from the truth)."""
    conf = conf.double()
    tp = conf.diag()
    truth = conf.sum(1)
    union = truth + conf.sum(0) - tp
    present = truth > 0
    iou = tp / union.clamp_min(1)
    total = conf.sum().item()
    return {
        "miou": 100.0 * iou[present].mean().item() if present.any() else math.nan,
        "pixel_acc": 100.0 * tp.sum().item() / total if total else math.nan,
        "iou": [100.0 * v if p else None for v, p in zip(iou.tolist(), present.tolist())],
        "pixels": int(total),
    }


def upsampled_prediction(class_scores: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``(B, C, h, w)`` patch scores -> ``(B, H, W)`` predicted classes (bilinear upsampling, then argmax)."""
    up = F.interpolate(class_scores.float(), size=tuple(size), mode="bilinear", align_corners=False)
    return up.argmax(dim=1)


class SplitScorer:
    """Accumulates one confusion matrix over a split, image block by image block; keeps the first predictions."""

    def __init__(self, dataset: SegmentationDataset, keep: int = 0) -> None:
        self.dataset, self.keep = dataset, keep
        self.conf = torch.zeros(dataset.num_classes, dataset.num_classes, dtype=torch.int64)
        self.kept: list[torch.Tensor] = []

    def add(self, start: int, class_scores: torch.Tensor) -> None:
        """Score images ``start .. start + B`` from their patch scores ``(B, C, h, w)`` against their full masks."""
        masks = [self.dataset.mask(start + i) for i in range(len(class_scores))]
        sizes = {tuple(m.shape) for m in masks}
        if len(sizes) == 1:  # one upsampling for the block
            preds = list(upsampled_prediction(class_scores, sizes.pop()))
        else:
            preds = [upsampled_prediction(s[None], m.shape)[0] for s, m in zip(class_scores, masks)]
        for pred, mask in zip(preds, masks):
            self.conf += confusion_matrix(pred, mask, self.dataset.num_classes)
            if len(self.kept) < self.keep:
                self.kept.append(pred.to(torch.uint8))

    def result(self) -> dict:
        return scores_from_confusion(self.conf)


def score_split(dataset: SegmentationDataset, class_scores_of: Callable[[int, int], torch.Tensor], *,
                block: int = 64, keep: int = 0, progress: Optional[Callable[[int], None]] = None) -> SplitScorer:
    """Score a whole split: ``class_scores_of(start, stop) -> (stop - start, C, h, w)`` for each block of images."""
    scorer = SplitScorer(dataset, keep)
    for start in range(0, len(dataset), block):
        stop = min(start + block, len(dataset))
        scorer.add(start, class_scores_of(start, stop))
        if progress is not None:
            progress(stop - start)
    return scorer
