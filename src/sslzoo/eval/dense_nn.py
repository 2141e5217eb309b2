"""``dense:nn``: in-context nearest-neighbour labelling of patches (Hummingbird, Balazevic et al. 2023).

The memory bank holds train patch features, each with the distribution of the labels of the pixels under it (255
pixels not counted; a patch with no labelled pixel is left out). Every val patch takes its ``k`` nearest bank
patches by cosine similarity, weights them by ``softmax(similarity / T)`` and sums their label distributions; the
per-patch distributions are upsampled and scored as every dense protocol is (:mod:`sslzoo.eval.seg_metrics`).

Bounded memory: a bank larger than ``bank_size`` patches is a seeded uniform sample of them; the bank is searched in
chunks of about ``BANK_CHUNK_BYTES`` (from memory-mapped features, each chunk's pages released after use), and each
chunk's neighbours are merged into the running top-k. Each chunk is searched by :func:`sslzoo.eval.knn.knn_neighbours`
with the backend the kNN path would choose for the whole bank (faiss from ``FAISS_MIN_BANK`` patches on), so both
backends give the same neighbours, ordered by (similarity desc, bank index asc).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

from ..data.segmentation import IGNORE_INDEX
from ..validation import int_at_least, positive
from .feature_store import release_rows
from .knn import FAISS_MIN_BANK, knn_neighbours

DEFAULT_K = 30  # open-hummingbird-eval's defaults
DEFAULT_TEMPERATURE = 0.02
DEFAULT_BANK_SIZE = 1_000_000
BANK_CHUNK_BYTES = 256 * 2**20
QUERY_CHUNK = 32768  # val patches searched together (each pass streams the whole bank once)


def check_nn_options(*, k: Optional[int] = None, temperature: Optional[float] = None,
                     bank_size: Optional[int] = None) -> None:
    int_at_least("k", k)
    positive("temperature", temperature)
    int_at_least("bank_size", bank_size)


def patch_label_distributions(masks: torch.Tensor, patch: int, num_classes: int) -> torch.Tensor:
    """``uint8 (N, S, S)`` masks -> ``(N, S/p, S/p, C)``: each patch's share of labelled pixels per class."""
    valid = masks != IGNORE_INDEX
    onehot = F.one_hot(torch.where(valid, masks, 0).long(), num_classes).float() * valid[..., None]
    counts = F.avg_pool2d(onehot.permute(0, 3, 1, 2), patch) * patch * patch  # (N, C, h, w) pixel counts
    return (counts / counts.sum(1, keepdim=True).clamp_min(1)).permute(0, 2, 3, 1)


def build_bank(masks: torch.Tensor, grid: int, num_classes: int, bank_size: int, seed: int,
               image_block: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """The bank's rows (indices into the flattened ``(N * h * w)`` train patches, ascending) and their label
    distributions ``float16 (M, C)``: every labelled patch, or a seeded uniform sample of ``bank_size`` of them."""
    patch = masks.shape[-1] // grid
    rows, labels = [], []
    for start in range(0, len(masks), image_block):
        dist = patch_label_distributions(masks[start : start + image_block], patch, num_classes).reshape(-1, num_classes)
        keep = (dist.sum(1) > 0).nonzero().flatten()
        rows.append(keep + start * grid * grid)
        labels.append(dist[keep].half())
    rows_t, labels_t = torch.cat(rows), torch.cat(labels)
    if len(rows_t) > bank_size:
        pick = torch.randperm(len(rows_t), generator=torch.Generator().manual_seed(seed))[:bank_size].sort().values
        rows_t, labels_t = rows_t[pick], labels_t[pick]
    return rows_t, labels_t


def _merge(best: Optional[tuple[torch.Tensor, torch.Tensor]], sims: torch.Tensor, idx: torch.Tensor,
           k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The top ``k`` of two candidate lists, ordered by (similarity desc, bank index asc) as the kNN path orders."""
    if best is not None:
        sims, idx = torch.cat([best[0], sims], 1), torch.cat([best[1], idx], 1)
    idx, perm = idx.sort(dim=1)
    sims = sims.gather(1, perm)
    top = sims.sort(dim=1, descending=True, stable=True).indices[:, :k]
    return sims.gather(1, top), idx.gather(1, top)


def bank_neighbours(bank_features: torch.Tensor, bank_rows: torch.Tensor, queries: torch.Tensor, k: int, *,
                    backend: str = "auto", chunk_rows: Optional[int] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` nearest bank patches of each query: ``(similarities (Q, k), bank positions (Q, k))``.

    ``bank_features`` is the train features viewed as ``(N * h * w, D)`` (memory-mapped or not); the bank is its rows
    ``bank_rows``, searched chunk by chunk.
    """
    width = bank_features.shape[1]
    if backend == "auto":
        backend = "faiss" if len(bank_rows) >= FAISS_MIN_BANK else "torch"
    chunk_rows = chunk_rows or max(1024, BANK_CHUNK_BYTES // (4 * width))
    k = min(k, len(bank_rows))
    best = None
    for start in range(0, len(bank_rows), chunk_rows):
        rows = bank_rows[start : start + chunk_rows]
        first, last = int(rows[0]), int(rows[-1]) + 1
        contiguous = last - first == len(rows)
        chunk = bank_features[first:last] if contiguous else bank_features[rows]
        sims, idx = knn_neighbours(chunk, queries, min(k, len(rows)), backend=backend)
        best = _merge(best, sims, idx + start, k)
        del chunk
        release_rows(bank_features, first, last)
    return best


def nn_class_scores(
    bank_features: torch.Tensor, bank_rows: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor, *,
    k: int = DEFAULT_K, temperature: float = DEFAULT_TEMPERATURE, backend: str = "auto",
) -> torch.Tensor:
    """Label distributions ``(Q, C)`` of queries ``(Q, D)``: softmax(sim / T)-weighted sum over the k neighbours."""
    sims, idx = bank_neighbours(bank_features, bank_rows, queries, k, backend=backend)
    weights = (sims / temperature).softmax(dim=1)
    return torch.einsum("qk,qkc->qc", weights, bank_labels[idx].float())


def nn_scores_of(
    train_features: torch.Tensor, bank_rows: torch.Tensor, bank_labels: torch.Tensor, val_features: torch.Tensor, *,
    k: int, temperature: float, backend: str = "auto",
) -> Callable[[int, int], torch.Tensor]:
    """``(start, stop) -> (B, C, h, w)`` class scores of val images ``start .. stop`` (for the split scorer)."""
    flat = train_features.reshape(-1, train_features.shape[-1])

    def scores(start: int, stop: int) -> torch.Tensor:
        grid = val_features[start:stop].clone()
        release_rows(val_features, start, stop)
        b, h, w, d = grid.shape
        out = nn_class_scores(flat, bank_rows, bank_labels, grid.reshape(-1, d), k=k, temperature=temperature,
                              backend=backend)
        return out.view(b, h, w, -1).permute(0, 3, 1, 2)

    return scores


def query_block(grid_cells: int) -> int:
    """Val images scored per block, so that a block's patches stay within ``QUERY_CHUNK``."""
    return max(1, QUERY_CHUNK // grid_cells)
