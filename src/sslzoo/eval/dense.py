"""The dense protocols end to end: a model and a segmentation dataset in, mIoU and pixel accuracy out.

``dense:linear`` (:mod:`sslzoo.eval.dense_linear`) and ``dense:nn`` (:mod:`sslzoo.eval.dense_nn`), on the patch
tokens of :mod:`sslzoo.eval.patch_features`, scored by :mod:`sslzoo.eval.seg_metrics`; the data is opened by
:func:`sslzoo.data.seg_layouts.open_segmentation` (the ``cifar10-mosaic`` benchmark, VOC 2012, ADE20K or the generic
folder layout). Every result carries its protocol's name, as the kNN and linear results do.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple, Optional, Sequence, Union

import torch
from tqdm.auto import tqdm

from ..data.decode import DatasetFormatError
from ..data.seg_layouts import open_segmentation
from ..data.segmentation import SegmentationDataset
from ..validation import InvalidOptionError, int_at_least
from . import dense_linear, dense_nn
from .patch_features import check_layers, check_size, extract_patch_features, native_size, patch_size_of
from .protocol_table import DENSE_DATA, DENSE_PROTOCOLS
from .protocols import LoadedModel, as_loaded
from .seg_metrics import score_split

PICTURE_IMAGES = 4


class DenseSplits(NamedTuple):
    name: str
    train: SegmentationDataset
    val: SegmentationDataset


def protocol_name(protocol: str) -> str:
    """``linear`` / ``nn`` / ``dense:linear`` / ``dense:nn`` -> the full name; anything else is refused."""
    full = protocol if protocol.startswith("dense:") else f"dense:{protocol}"
    if full not in DENSE_PROTOCOLS:
        raise InvalidOptionError(f"Unknown dense protocol {protocol!r}: use linear or nn (dense:linear, dense:nn).")
    return full


def check_dense_options(*, protocol: str, layers: int, size: Optional[int] = None, batch_size: int = 64,
                        k: Optional[int] = None, temperature: Optional[float] = None,
                        bank_size: Optional[int] = None, lrs: Optional[Sequence[float]] = None,
                        epochs: Optional[int] = None) -> str:
    """Everything :func:`dense_eval` refuses before it opens data or builds a model; returns the protocol's name."""
    name = protocol_name(protocol)
    check_layers(layers)
    int_at_least("size", size)
    int_at_least("batch_size", batch_size)
    dense_nn.check_nn_options(k=k, temperature=temperature, bank_size=bank_size)
    dense_linear.check_linear_options(lrs=lrs, epochs=epochs)
    return name


def open_dense_splits(data: str, mosaic: Optional[dict[str, Any]] = None) -> DenseSplits:
    """The train and val splits of ``data`` (checked: same classes)."""
    train = open_segmentation(data, "train", **(mosaic or {}))
    val = open_segmentation(data, "val", **(mosaic or {}))
    if train.classes != val.classes:
        raise DatasetFormatError(f"The train and val splits of {data} name different classes.")
    return DenseSplits(str(data), train, val)


def _default_size(train: SegmentationDataset, patch: int, model_size: int) -> int:
    """The data's own side where all its images share one square size (the mosaics), else the model's."""
    images = getattr(train, "images", None)
    if images is not None and images.shape[-1] == images.shape[-2] and images.shape[-1] >= patch:
        return images.shape[-1] - images.shape[-1] % patch
    return model_size


def _bar(total: int, name: str, progress: bool) -> tqdm:
    return tqdm(total=total, unit="img", desc=f"{name} val", disable=not progress or not sys.stderr.isatty())


def _nan_safe_best(values: Sequence[float]) -> int:
    return max(range(len(values)), key=lambda i: (-math.inf if math.isnan(values[i]) else values[i], -i))


def dense_eval(
    model: Union[str, torch.nn.Module, LoadedModel],
    data: Union[str, DenseSplits] = DENSE_DATA,
    *,
    protocol: str = "dense:linear",
    layers: int = 1,
    size: Optional[int] = None,
    batch_size: int = 64,
    cache: bool = True,
    device: Optional[str] = None,
    k: Optional[int] = None,
    temperature: Optional[float] = None,
    bank_size: Optional[int] = None,
    lrs: Optional[Sequence[float]] = None,
    epochs: Optional[int] = None,
    batchnorm: bool = True,
    seed: int = 0,
    picture: Optional[Union[str, Path]] = None,
    progress: bool = True,
    mosaic: Optional[dict[str, Any]] = None,
) -> dict[str, Any]:
    """mIoU of a frozen model's patch tokens by ``dense:linear`` or ``dense:nn``.

    Args:
        model: a registry name (loaded with its weights), a module, or a :class:`LoadedModel`.
        data: ``cifar10-mosaic[:CIFAR10_PATH]``, ``voc2012``, or a VOC / ADE20K / generic folder; or the splits
            from :func:`open_dense_splits`.
        protocol: ``dense:linear`` (or ``linear``) or ``dense:nn`` (or ``nn``).
        layers: the last ``layers`` blocks' patch tokens, concatenated (1 or 4 usually).
        size: the square input side (a multiple of the patch size); default the data's where all its images share
            one square size (the mosaics: 96), else the model's.
        k, temperature, bank_size: ``dense:nn`` (default 30, 0.02, 1,000,000 patches).
        lrs, epochs, batchnorm: ``dense:linear`` (default 5 learning rates, 10 epochs, standardised channels).
        seed: the held-out slice of train and the bank sample.
        picture: write a PNG of a few val images, their ground truth and the prediction there.
        mosaic: keyword arguments of the mosaics (``count``, ``size``, ``grids``, ``seed``), for cifar10-mosaic only.

    Returns:
        ``{"protocol", "model", "weights", "data", "layers", "size", "miou", "pixel_acc", "iou": {class: IoU},
        "num_train", "num_val", "seconds", ...}`` with percentages, and the protocol's settings.
    """
    name = check_dense_options(protocol=protocol, layers=layers, size=size, batch_size=batch_size, k=k,
                               temperature=temperature, bank_size=bank_size, lrs=lrs, epochs=epochs)
    start_time = time.perf_counter()
    data, train, val = data if isinstance(data, DenseSplits) else open_dense_splits(data, mosaic)
    loaded = as_loaded(model)
    net = loaded.model
    patch = patch_size_of(net)
    size = check_size(size, patch) or _default_size(train, patch, native_size(net))
    check_layers(layers, len(net.blocks) if hasattr(net, "blocks") else None)
    common = dict(layers=layers, size=size, batch_size=batch_size, device=device, progress=progress,
                  cache_key="" if cache else None)
    train_x, train_masks = extract_patch_features(net, train, **common)
    val_x, _ = extract_patch_features(net, val, **common)
    grid = train_x.shape[1]
    keep = PICTURE_IMAGES if picture is not None else 0
    result: dict[str, Any] = {"protocol": name, "model": loaded.name, "weights": loaded.weights, "data": str(data),
                              "layers": layers, "size": size, "patch": patch, "classes": train.classes}
    if name == "dense:linear":
        fit, held = dense_linear.held_out_split(len(train_x), dense_linear.HELD_OUT, seed)
        lrs = tuple(lrs or dense_linear.DEFAULT_LRS)
        epochs = epochs or dense_linear.DEFAULT_EPOCHS
        heads = dense_linear.train_linear_heads(train_x, train_masks, fit, train.num_classes, lrs=lrs, epochs=epochs,
                                                batchnorm=batchnorm, seed=seed, progress=progress)
        held_miou = dense_linear.held_out_miou(heads, train_x, train_masks, held, train.num_classes)
        best = _nan_safe_best(held_miou)
        with _bar(len(val), name, progress) as bar:
            scorer = score_split(val, dense_linear.linear_scores_of(heads, best, val_x), keep=keep, progress=bar.update)
        result.update(lrs=list(lrs), epochs=epochs, batchnorm=batchnorm, best_lr=lrs[best],
                      held_out_miou=dict(zip(map(str, lrs), held_miou)), num_fit=len(fit), num_held_out=len(held))
    else:
        k = k or dense_nn.DEFAULT_K
        temperature = temperature or dense_nn.DEFAULT_TEMPERATURE
        bound = bank_size or dense_nn.DEFAULT_BANK_SIZE
        rows, labels = dense_nn.build_bank(train_masks, grid, train.num_classes, bound, seed)
        scores_of = dense_nn.nn_scores_of(train_x, rows, labels, val_x, k=k, temperature=temperature)
        with _bar(len(val), name, progress) as bar:
            scorer = score_split(val, scores_of, block=dense_nn.query_block(grid * grid), keep=keep,
                                 progress=bar.update)
        result.update(k=k, temperature=temperature, bank_bound=bound, bank_patches=len(rows))
    scores = scorer.result()
    result.update(miou=scores["miou"], pixel_acc=scores["pixel_acc"],
                  iou=dict(zip(train.classes, scores["iou"])), scored_pixels=scores["pixels"],
                  num_train=len(train), num_val=len(val), seconds=time.perf_counter() - start_time)
    if picture is not None:
        from .dense_picture import save_dense_picture

        save_dense_picture(val, scorer.kept, picture, title=f"{loaded.name} · {name} · mIoU {scores['miou']:.1f}")
        result["picture"] = str(picture)
    return result
