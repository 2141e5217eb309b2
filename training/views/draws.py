"""Seeded random draws for the batched views: every number comes from the caller's ``torch.Generator``.

Numbers are drawn on the generator's own device and then moved, so a fixed seed reproduces a view exactly on CPU
and GPU alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def rand_uniform(
    shape: Sequence[int], *, generator: torch.Generator, device: torch.device | str | None = None,
    low: float | Tensor = 0.0, high: float | Tensor = 1.0,
) -> Tensor:
    """U(low, high) samples of ``shape`` drawn from ``generator`` (on its own device), returned on ``device``."""
    u = torch.rand(tuple(shape), generator=generator, device=generator.device)
    u = u.to(device) if device is not None else u
    return low + (high - low) * u


def bernoulli(batch: int, p: float, *, generator: torch.Generator, device: torch.device | str | None = None) -> Tensor:
    """A bool (batch,) mask, True with probability ``p``."""
    return rand_uniform((batch,), generator=generator, device=device) < p


def random_permutations(batch: int, length: int, *, generator: torch.Generator,
                        device: torch.device | str | None = None) -> Tensor:
    """One uniform random permutation of ``range(length)`` per row: LongTensor (batch, length)."""
    return torch.argsort(rand_uniform((batch, length), generator=generator, device=device), dim=1)
