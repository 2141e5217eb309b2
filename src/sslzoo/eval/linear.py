"""``linear:frozen``: linear classifiers on cached frozen features, a whole hyper-parameter sweep at once.

Every (learning rate, weight decay) pair is one head of a batched weight tensor ``(H, D, C)``; the loss is the sum of
the heads' losses, so each head receives exactly its own gradient, and one ``einsum`` per step trains all of them.
Training is SGD with momentum 0.9 and a cosine learning-rate schedule; the head with the best accuracy on a
stratified held-out part of train is reported on test.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

from .options import check_linear_options  # noqa: F401 - re-exported: part of the linear probe's API

DEFAULT_LRS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)


def stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (fit, held_out): ``fraction`` of each class held out (at least one image where a class has two)."""
    g = torch.Generator().manual_seed(seed)
    fit, held = [], []
    for c in labels.unique(sorted=True):
        members = (labels == c).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=g)]
        n_held = min(len(members) - 1, max(1, round(fraction * len(members)))) if fraction > 0 else 0
        held.append(members[:n_held])
        fit.append(members[n_held:])
    return torch.cat(fit).sort().values, torch.cat(held).sort().values


def _check(x: torch.Tensor, y: torch.Tensor, name: str) -> None:
    if x.ndim != 2 or y.ndim != 1 or len(x) != len(y):
        raise ValueError(f"{name}: features must be (N, D) and labels (N,), got {tuple(x.shape)} and {tuple(y.shape)}.")
    if y.dtype.is_floating_point:
        raise ValueError(f"{name}: labels must be integers.")


def train_heads(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    num_classes: int,
    lrs: Sequence[float],
    weight_decays: Sequence[float],
    epochs: int,
    batch_size: Optional[int],
    seed: int,
) -> tuple[torch.Tensor, torch.Tensor, list[tuple[float, float]]]:
    """Train one linear head per (lr, wd) pair on ``x``; returns weights (H, D, C), biases (H, C) and the pairs."""
    grid = [(lr, wd) for lr in lrs for wd in weight_decays]
    n, d = x.shape
    h = len(grid)
    lr0 = torch.tensor([p[0] for p in grid]).view(h, 1, 1)
    wd = torch.tensor([p[1] for p in grid]).view(h, 1, 1)
    weight = torch.zeros(h, d, num_classes)
    bias = torch.zeros(h, 1, num_classes)
    mom_w, mom_b = torch.zeros_like(weight), torch.zeros_like(bias)
    g = torch.Generator().manual_seed(seed)
    bs = n if batch_size is None else min(batch_size, n)
    steps_per_epoch = math.ceil(n / bs)
    total = epochs * steps_per_epoch
    step = 0
    for _ in range(epochs):
        order = torch.randperm(n, generator=g) if bs < n else torch.arange(n)
        for start in range(0, n, bs):
            idx = order[start : start + bs]
            xb, yb = x[idx], y[idx]
            logits = torch.einsum("nd,hdc->hnc", xb, weight) + bias
            # d(sum of per-head mean CE)/d(logits), written out so no autograd graph is kept across heads
            grad_logits = logits.softmax(dim=-1)
            grad_logits[:, torch.arange(len(yb)), yb] -= 1.0
            grad_logits /= len(yb)
            grad_w = torch.einsum("nd,hnc->hdc", xb, grad_logits) + wd * weight
            grad_b = grad_logits.sum(dim=1, keepdim=True)
            lr = lr0 * 0.5 * (1.0 + math.cos(math.pi * step / total))
            mom_w.mul_(0.9).add_(grad_w)
            mom_b.mul_(0.9).add_(grad_b)
            weight -= lr * mom_w
            bias -= lr * mom_b
            step += 1
    return weight, bias.squeeze(1), grid


def _accuracy(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    logits = torch.einsum("nd,hdc->hnc", x, weight) + bias[:, None]
    return 100.0 * (logits.argmax(-1) == y).float().mean(dim=1)


def linear_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    lrs: Sequence[float] = DEFAULT_LRS,
    weight_decays: Sequence[float] = (0.0,),
    epochs: int = 100,
    batch_size: Optional[int] = 1024,
    val_fraction: float = 0.1,
    seed: int = 0,
    normalize: bool = True,
) -> dict:
    """Linear probe with a parallel sweep; the best head on a held-out part of train is reported on test.

    Args:
        lrs, weight_decays: the grid; every pair is trained at once.
        epochs: passes over the fit part of train.
        batch_size: mini-batch size; None trains full-batch.
        val_fraction: the stratified share of train held out to choose the head (0: choose on train itself).
        seed: seeds the split and the batch order; the same seed gives the same numbers.
        normalize: standardise features with the fit part's mean and std.

    Returns:
        ``{"protocol": "linear:frozen", "best": {lr, weight_decay, val_acc, test_acc}, "sweep": [...], ...}``.
    """
    _check(train_features, train_labels, "train")
    _check(test_features, test_labels, "test")
    if train_features.shape[1] != test_features.shape[1]:
        raise ValueError("Train and test features differ in width.")
    check_linear_options(epochs=epochs, lrs=lrs, weight_decays=weight_decays, batch_size=batch_size)
    x = train_features.detach().float().cpu()
    y = train_labels.long().cpu()
    xt = test_features.detach().float().cpu()
    yt = test_labels.long().cpu()
    num_classes = int(max(y.max().item(), yt.max().item()) + 1)
    fit, held = stratified_split(y, val_fraction, seed)
    if len(held) == 0:
        held = fit
    if normalize:
        mean, std = x[fit].mean(0), x[fit].std(0).clamp_min(1e-6)
        x, xt = (x - mean) / std, (xt - mean) / std
    weight, bias, grid = train_heads(
        x[fit], y[fit], num_classes=num_classes, lrs=lrs, weight_decays=weight_decays, epochs=epochs,
        batch_size=batch_size, seed=seed,
    )
    val = _accuracy(x[held], y[held], weight, bias)
    test = _accuracy(xt, yt, weight, bias)
    best = int(val.argmax())  # first best on ties: the smallest lr, then the smallest wd
    sweep = [
        {"lr": lr, "weight_decay": wd, "val_acc": val[i].item(), "test_acc": test[i].item()}
        for i, (lr, wd) in enumerate(grid)
    ]
    return {
        "protocol": "linear:frozen",
        "best": sweep[best],
        "sweep": sweep,
        "epochs": epochs,
        "batch_size": batch_size,
        "num_fit": len(fit),
        "num_val": len(held),
        "num_test": len(yt),
    }
