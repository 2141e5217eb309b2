"""Seeded random draws for the batched views, from the caller's ``torch.Generator`` or per-sample draws.

Every function takes either a ``torch.Generator`` (numbers drawn on its own device and then moved, so a fixed seed
reproduces a view exactly on CPU and GPU alike) or a :class:`training.views.sample_draws.SampleDraws`, whose row b
depends only on sample b (the training loop's choice: views independent of the batch a sample lands in).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .sample_draws import SampleDraws

RandomSource = torch.Generator | SampleDraws


def rand_uniform(
    shape: Sequence[int], *, generator: RandomSource, device: torch.device | str | None = None,
    low: float | Tensor = 0.0, high: float | Tensor = 1.0,
) -> Tensor:
    """U(low, high) samples of ``shape`` (leading dimension the batch) drawn from ``generator``, on ``device``."""
    if isinstance(generator, SampleDraws):
        u = generator.uniform(shape)
    else:
        u = torch.rand(tuple(shape), generator=generator, device=generator.device)
    u = u.to(device) if device is not None else u
    return low + (high - low) * u


def rand_normal(shape: Sequence[int], *, generator: RandomSource) -> Tensor:
    """N(0, 1) float64 samples of ``shape`` on the generator's device."""
    if isinstance(generator, SampleDraws):
        return generator.normal(shape)
    return torch.randn(tuple(shape), generator=generator, device=generator.device, dtype=torch.float64)


def bernoulli(batch: int, p: float, *, generator: RandomSource, device: torch.device | str | None = None) -> Tensor:
    """A bool (batch,) mask, True with probability ``p``."""
    return rand_uniform((batch,), generator=generator, device=device) < p


def random_permutations(batch: int, length: int, *, generator: RandomSource,
                        device: torch.device | str | None = None) -> Tensor:
    """One uniform random permutation of ``range(length)`` per row: LongTensor (batch, length)."""
    return torch.argsort(rand_uniform((batch, length), generator=generator, device=device), dim=1)
