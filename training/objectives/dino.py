"""DINO's objective: sharpened, centred teacher targets and the student's cross-entropy against them.

- teacher probabilities: softmax((t - c) / tau_t), no gradient;
- student log-probabilities: log_softmax(s / tau_s);
- loss: mean over the (teacher view, student view) pairs with different views of -sum p_t log p_s, each averaged
  over the batch (official DINO);
- centre: c <- m c + (1 - m) mean of the teacher logits over the global batch (all-reduced), updated after the loss;
- teacher temperature: linear warm-up from ``warmup_temp`` to ``final_temp`` over ``warmup_epochs`` epochs, then
  constant, indexed by the integer epoch as in the official code.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..distributed import all_reduce_sum, world_size


def teacher_temperature(epoch: int, *, warmup_temp: float, final_temp: float, warmup_epochs: int) -> float:
    """The teacher temperature of (0-based) ``epoch``."""
    if warmup_epochs <= 0 or epoch >= warmup_epochs:
        return final_temp
    if warmup_epochs == 1:
        return warmup_temp
    return warmup_temp + (final_temp - warmup_temp) * epoch / (warmup_epochs - 1)


class Center(nn.Module):
    """An EMA of the teacher's outputs over the global batch, subtracted before the teacher softmax.

    Inside :meth:`deferred` the updates of several forward passes (the micro-batches of one optimizer step) are
    pooled and applied once at the end, as one update with the whole batch's mean: every micro-batch is centred
    with the same centre, as the undivided batch would be.
    """

    def __init__(self, dim: int, momentum: float = 0.9) -> None:
        super().__init__()
        self.momentum = momentum
        self.register_buffer("center", torch.zeros(1, dim))
        self._pending: list[tuple[Tensor, int]] | None = None

    @torch.no_grad()
    def update(self, teacher_logits: Sequence[Tensor]) -> None:
        """Fold in the mean of the local teacher logits (each (B, K) or (B, L, K)) across all ranks."""
        flat = torch.cat([t.reshape(-1, t.shape[-1]).float() for t in teacher_logits])
        local = (flat.sum(dim=0, keepdim=True), flat.shape[0])
        if self._pending is not None:
            self._pending.append(local)
        else:
            self._fold_in(*local)

    def _fold_in(self, local_sum: Tensor, count: int) -> None:
        mean = all_reduce_sum(local_sum) / (count * world_size())
        self.center.mul_(self.momentum).add_(mean, alpha=1 - self.momentum)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Pool the updates made inside the block into one, applied when it ends."""
        self._pending = []
        try:
            yield
        finally:
            pending, self._pending = self._pending, None
            if pending:
                self._fold_in(sum(p[0] for p in pending), sum(p[1] for p in pending))

    def teacher_probs(self, teacher_logits: Tensor, temperature: float) -> Tensor:
        """softmax((t - c) / tau_t) over the last dimension, in float32, without gradient."""
        return F.softmax((teacher_logits.detach().float() - self.center) / temperature, dim=-1)


def cross_entropy(teacher_probs: Tensor, student_logits: Tensor, student_temp: float) -> Tensor:
    """Mean over all leading dimensions of -sum_k p_t log softmax(s / tau_s)."""
    return -(teacher_probs * F.log_softmax(student_logits.float() / student_temp, dim=-1)).sum(dim=-1).mean()


def dino_loss(teacher_probs: Sequence[Tensor], student_logits: Sequence[Tensor], student_temp: float) -> Tensor:
    """DINO's multi-crop loss: teacher view i against every student view j != i (the first views are the same
    global crops), averaged over the pairs.

    >>> import torch
    >>> from sslzoo.training.objectives.dino import Center, dino_loss
    >>> center = Center(dim=8)
    >>> teacher = [torch.randn(4, 8), torch.randn(4, 8)]         # the two global crops
    >>> student = [torch.randn(4, 8, requires_grad=True) for _ in range(4)]  # the same two, and two local crops
    >>> probs = [center.teacher_probs(t, temperature=0.04) for t in teacher]
    >>> loss = dino_loss(probs, student, student_temp=0.1)
    >>> loss.backward()
    >>> center.update(teacher)                                  # after the loss, as DINO does
    >>> bool(center.center.abs().sum() > 0), student[0].grad.shape
    (True, torch.Size([4, 8]))
    """
    total, pairs = student_logits[0].new_zeros((), dtype=torch.float32), 0
    for i, probs in enumerate(teacher_probs):
        for j, logits in enumerate(student_logits):
            if i != j:
                total = total + cross_entropy(probs, logits, student_temp)
                pairs += 1
    return total / pairs
