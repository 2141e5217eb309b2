"""InfoNCE over the global batch (MoCo v3 form), with hard (diagonal) or soft targets.

Queries are the local batch (with gradient); keys are the keys of every rank, already all-gathered (they are
stop-gradient in every method here, so the gather needs no backward). Logits are computed in float32 under AMP:
autocast would otherwise run the similarity matmul in bf16/fp16 even on float32 inputs, and a bf16 cosine / 0.2 has
steps of 0.03 near 5.

Scale: MoCo v3 multiplies the cross-entropy by 2 tau; APS (METHODS 1.4) and PatchMix (2.4) do not; the caller
passes ``scale``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F


def hard_targets(local_batch: int, rank: int = 0, *, device: torch.device | str | None = None) -> Tensor:
    """Class indices of the positive keys: query i matches key ``rank * local_batch + i`` of the gathered keys."""
    return torch.arange(local_batch, device=device) + rank * local_batch


def info_nce(queries: Tensor, keys: Tensor, targets: Tensor, *, temperature: float, scale: float = 1.0) -> Tensor:
    """Mean over queries of CE(softmax(q_hat k_hat^T / tau), targets), times ``scale``.

    Args:
        queries: (B, d) local queries.
        keys: (N, d) all-gathered keys (N = B * world size).
        targets: LongTensor (B,) of positive-key indices (:func:`hard_targets`), or float (B, N) soft targets whose
            rows sum to 1 (PatchMix).
        temperature: tau.
        scale: factor on the loss (2 tau for MoCo v3).

    >>> import torch
    >>> from sslzoo.training.objectives.infonce import hard_targets, info_nce
    >>> q = torch.eye(4)
    >>> round(info_nce(q, q, hard_targets(4), temperature=0.1).item(), 4)  # each query is its own key
    0.0001
    >>> round(info_nce(q, q.roll(1, 0), hard_targets(4), temperature=0.1).item(), 2)
    10.0
    """
    with torch.autocast(queries.device.type, enabled=False):
        logits = F.normalize(queries.float(), dim=1) @ F.normalize(keys.float(), dim=1).T / temperature
        if targets.dtype.is_floating_point:
            loss = -(targets.float() * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
        else:
            loss = F.cross_entropy(logits, targets)
    return scale * loss
