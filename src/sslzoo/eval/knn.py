"""Weighted k-nearest-neighbour classification of frozen features (DINO's protocol).

Both feature sets are L2-normalised; each query takes its top-k train neighbours by cosine similarity, weights each
by ``exp(sim / T)``, sums the weights per class and predicts the argmax (ties: the lowest class index).

Two search backends, exact faiss (``IndexFlatIP``) for large banks and plain torch (chunked matmul + top-k) for small
ones, return identical predictions: each finds ``k + margin`` candidates, and the final similarities of those
candidates are recomputed by the same torch code, so the weights, and the vote, do not depend on the backend's
summation order. Queries are processed in chunks so that the similarity block stays within a memory budget.
"""

from __future__ import annotations

import logging
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from .options import check_knn_options  # noqa: F401 - re-exported: part of the kNN API
from .protocol_table import HEADLINE_K, KNN_PRESETS  # noqa: F401 - re-exported: the presets belong to the kNN API

_logger = logging.getLogger(__name__)

FAISS_MIN_BANK = 8192  # below this the torch path is as fast (benchmarks/knn.py)
MEMORY_BUDGET_BYTES = 256 * 2**20
_MARGIN = 8  # extra candidates, so that re-ranking cannot drop a true neighbour lost to rounding


def clamp_k(ks: Sequence[int], bank_size: int) -> tuple[int, ...]:
    """The neighbour counts a bank of ``bank_size`` can serve, in order, without repeats; a notice when one shrinks."""
    out = tuple(dict.fromkeys(min(int(k), bank_size) for k in ks))
    too_large = [int(k) for k in ks if k > bank_size]
    if too_large:
        _logger.warning("k=%s exceeds the bank of %d train features; using k=%d instead.",
                        ",".join(map(str, too_large)), bank_size, bank_size)
    return out


def _check(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor) -> None:
    if train_features.ndim != 2 or test_features.ndim != 2:
        raise ValueError("kNN features must be 2-D (N, D) tensors.")
    if train_features.shape[1] != test_features.shape[1]:
        raise ValueError(
            f"Train and test features differ in width: {train_features.shape[1]} vs {test_features.shape[1]}.")
    if len(train_features) == 0:
        raise ValueError("The kNN bank (train features) is empty.")
    if train_labels.ndim != 1 or len(train_labels) != len(train_features):
        raise ValueError("train_labels must be a 1-D tensor with one label per train feature.")
    if train_labels.dtype.is_floating_point:
        raise ValueError("train_labels must be integers.")


_BLOCK = 64  # similarities per block in the pruned top-k


def _top_n(sims: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of the ``n`` largest entries of every row, found among the rows' best blocks only.

    The n-th largest of the block maxima is a lower bound of the row's n-th largest entry (each of the n best blocks
    holds an entry at least that large), so the row's top n all lie in its n best blocks: a vectorised max over
    blocks and a top-k over n * 64 entries replace a top-k over every entry, which cost 0.4x the similarity matmul.
    """
    rows, width = sims.shape
    blocks = width // _BLOCK
    if blocks <= 2 * n:
        return sims.topk(n, dim=1, sorted=False).indices
    body = sims[:, : blocks * _BLOCK].view(rows, blocks, _BLOCK)
    best = body.amax(dim=2).topk(n, dim=1, sorted=False).indices  # (rows, n) block numbers
    cols = (best.unsqueeze(2) * _BLOCK + torch.arange(_BLOCK)).flatten(1)  # (rows, n * 64) column indices
    if width > blocks * _BLOCK:  # the short last block is always a candidate
        cols = torch.cat([cols, torch.arange(blocks * _BLOCK, width).expand(rows, -1)], dim=1)
    picked = sims.gather(1, cols).topk(n, dim=1, sorted=False).indices
    return cols.gather(1, picked)


def _candidates_torch(bank: torch.Tensor, queries: torch.Tensor, n: int, chunk: int) -> torch.Tensor:
    out = []
    for start in range(0, len(queries), chunk):
        out.append(_top_n(queries[start : start + chunk] @ bank.T, n))
    return torch.cat(out)


def _candidates_faiss(bank: torch.Tensor, queries: torch.Tensor, n: int) -> torch.Tensor:
    import faiss

    index = faiss.IndexFlatIP(bank.shape[1])
    index.add(np.ascontiguousarray(bank.numpy(), dtype=np.float32))
    _, idx = index.search(np.ascontiguousarray(queries.numpy(), dtype=np.float32), n)
    return torch.from_numpy(idx).long()


def knn_neighbours(
    train_features: torch.Tensor,
    test_features: torch.Tensor,
    k: int,
    *,
    backend: str = "auto",
    chunk_size: Optional[int] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` most similar train features of every test feature, most similar first.

    Returns:
        ``(similarities (Q, k), indices (Q, k))``.
    """
    bank = F.normalize(train_features.detach().float().cpu(), dim=1)
    queries = F.normalize(test_features.detach().float().cpu(), dim=1)
    k = min(k, len(bank))
    n = min(k + _MARGIN, len(bank))
    if backend == "auto":
        backend = "faiss" if len(bank) >= FAISS_MIN_BANK else "torch"
    chunk = chunk_size or max(1, MEMORY_BUDGET_BYTES // (4 * len(bank)))
    if backend == "torch":
        cand = _candidates_torch(bank, queries, n, chunk)
    elif backend == "faiss":
        cand = _candidates_faiss(bank, queries, n)
    else:
        raise ValueError(f"Unknown kNN backend {backend!r}: use 'auto', 'torch' or 'faiss'.")
    sims, order = [], []
    for start in range(0, len(queries), chunk):
        c = cand[start : start + chunk]
        s = torch.einsum("qd,qnd->qn", queries[start : start + chunk], bank[c])
        # stable sort on (similarity desc, index asc) makes the order independent of the candidate order
        c_sorted, perm = c.sort(dim=1)
        s = s.gather(1, perm)
        top = s.sort(dim=1, descending=True, stable=True).indices[:, :k]
        sims.append(s.gather(1, top))
        order.append(c_sorted.gather(1, top))
    return torch.cat(sims), torch.cat(order)


def knn_vote(
    similarities: torch.Tensor, neighbours: torch.Tensor, train_labels: torch.Tensor, k: int, temperature: float,
    num_classes: int,
) -> torch.Tensor:
    """DINO's weighted vote over the first ``k`` neighbours; returns predicted labels (Q,)."""
    w = (similarities[:, :k] / temperature).exp()
    votes = torch.zeros(len(similarities), num_classes, dtype=w.dtype)
    votes.scatter_add_(1, train_labels[neighbours[:, :k]], w)
    return votes.argmax(dim=1)


def knn_classify(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    *,
    k: Union[int, Sequence[int]] = 20,
    temperature: float = 0.07,
    num_classes: Optional[int] = None,
    backend: str = "auto",
    chunk_size: Optional[int] = None,
) -> Union[torch.Tensor, dict[int, torch.Tensor]]:
    """Predict test labels by DINO's weighted kNN vote.

    Args:
        train_features, train_labels, test_features: the bank (N, D), its labels (N,), the queries (Q, D).
        k: one neighbour count, or several (the neighbours are searched once, for the largest).
        temperature: the vote weights are ``exp(cosine / temperature)``.
        num_classes: default ``max(train_labels) + 1``.
        backend: ``auto`` (faiss from ``FAISS_MIN_BANK`` train features on), ``torch`` or ``faiss``; the
            predictions are the same.
        chunk_size: queries per chunk; default keeps a chunk's similarity block under 256 MB.

    Returns:
        predictions (Q,) for an int ``k``, ``{k: predictions}`` for a sequence (keyed by the k asked for). A k
        larger than the bank uses the whole bank, with a logged notice.

    Raises:
        sslzoo.validation.InvalidOptionError: a k below 1 or a temperature that is not greater than 0.
    """
    _check(train_features, train_labels, test_features)
    check_knn_options(k, temperature)
    ks = [k] if isinstance(k, int) else list(k)
    clamp_k(ks, len(train_features))
    labels = train_labels.long().cpu()
    classes = int(num_classes if num_classes is not None else labels.max().item() + 1)
    sims, idx = knn_neighbours(train_features, test_features, max(ks), backend=backend, chunk_size=chunk_size)
    preds = {kk: knn_vote(sims, idx, labels, min(kk, len(labels)), temperature, classes) for kk in ks}
    return preds[ks[0]] if isinstance(k, int) else preds


def knn_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    **kwargs,
) -> dict[int, float]:
    """Top-1 accuracy (%) for each k; keyword arguments as :func:`knn_classify` (``k`` may be a sequence)."""
    k = kwargs.pop("k", 20)
    preds = knn_classify(train_features, train_labels, test_features, k=(k,) if isinstance(k, int) else k, **kwargs)
    return {kk: 100.0 * (p == test_labels.cpu()).float().mean().item() for kk, p in preds.items()}


def knn_few_shot(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    shots: int,
    seeds: Sequence[int] = (0, 1, 2),
    k: int = 20,
    temperature: float = 0.07,
) -> dict:
    """kNN with ``shots`` labelled train images per class, drawn per seed; accuracy mean and std over seeds."""
    labels = train_labels.long().cpu()
    classes = int(labels.max().item() + 1)
    per_seed = []
    for seed in seeds:
        g = torch.Generator().manual_seed(seed)
        chosen = []
        for c in range(classes):
            members = (labels == c).nonzero().flatten()
            if len(members) < shots:
                raise ValueError(f"Class {c} has {len(members)} train images, fewer than {shots} shots.")
            chosen.append(members[torch.randperm(len(members), generator=g)[:shots]])
        sel = torch.cat(chosen)
        acc = knn_accuracy(train_features[sel], labels[sel], test_features, test_labels, k=min(k, len(sel)),
                           temperature=temperature, num_classes=classes)
        per_seed.append(next(iter(acc.values())))
    t = torch.tensor(per_seed)
    return {"shots": shots, "mean": t.mean().item(), "std": t.std(unbiased=False).item(), "per_seed": per_seed}
