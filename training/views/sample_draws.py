"""Per-sample random numbers: every draw of sample i in epoch e depends only on (seed, epoch, i, stream, position).

The views of a batch are drawn by batched tensor code (``training.views.crops``, ``.color``, ``.aps``); with a
``torch.Generator`` the numbers of one image depend on the whole batch, so a rank that augments only its share of
the global batch, or a DataLoader worker that crops one image, would draw other numbers than one process holding
the whole batch. :class:`SampleDraws` stands in for the generator: row b of every draw is a counter-based hash of
sample b's key and the draw's column, so

- a rank, a worker (a batch of one) and a single process give sample i the same crops and colours;
- the augmentation of a sample does not depend on the world size, the batch size or the number of workers.

Batched code consumes columns in a fixed order (the first draw takes columns 0..k-1 of every row, the next one the
following columns), which is the same for a batch of one and a batch of 4,096.

The hash is a 32-bit integer mixer (two multiply-xorshift rounds) evaluated in int64 arithmetic, which never
overflows (values stay below 2**32, the multiplier below 2**27), so CPU and CUDA give the same bits. A uniform has
24 random bits, as ``torch.rand`` float32 has.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TypeVar

import torch
from torch import Tensor

_MASK = 0xFFFFFFFF
_MULT = 0x045D9F3B
_GOLDEN = 0x9E3779B9

# the independent streams of one sample: its crops (drawn where the image is decoded) and its photometric steps
GEOMETRY, PHOTOMETRIC = 1, 2
_Mixed = TypeVar("_Mixed", Tensor, int)


def mix32(x: _Mixed) -> _Mixed:
    """A 32-bit avalanche hash of int64 values in [0, 2**32): a tensor, or a Python int (the same bits, no tensor)."""
    x = ((x ^ (x >> 16)) * _MULT) & _MASK
    x = ((x ^ (x >> 16)) * _MULT) & _MASK
    return x ^ (x >> 16)


def _mix_int(value: int) -> int:
    # in Python ints, so that a cached result never depends on a tensor mode active when it was first computed
    # (fake tensors answer int() with a stand-in)
    return mix32(value & _MASK)


# A DataLoader worker draws for one image at a time, so the parts that do not depend on the image are cached: they
# were a third of the geometry's cost per image.
@functools.lru_cache(maxsize=64)
def _head(seed: int, stream: int, epoch: int) -> int:
    return _mix_int(_mix_int(_mix_int(seed) ^ (stream * _GOLDEN)) ^ epoch)


@functools.lru_cache(maxsize=256)
def _salt(position: int, columns: int, device: torch.device) -> Tensor:
    pos = torch.arange(position, position + columns, device=device, dtype=torch.int64)
    return mix32((pos * _GOLDEN + 1) & _MASK)


def sample_keys(seed: int, epoch: int, indices: Tensor, stream: int) -> Tensor:
    """The keys (B,) int64 of dataset ``indices`` in ``epoch`` for one ``stream`` (:data:`GEOMETRY`, ...)."""
    head = _head(seed, stream, epoch)
    idx = indices.to(torch.int64)
    # indices above 2**32 (never met in practice) fold their high word in rather than being truncated
    return mix32(mix32((idx & _MASK) ^ head) ^ (idx >> 32))


class SampleDraws:
    """Stands in for a ``torch.Generator`` in the batched view code: row b's numbers depend only on ``keys[b]``.

    Args:
        keys: int64 (B,) in [0, 2**32), from :func:`sample_keys`.
    """

    def __init__(self, keys: Tensor) -> None:
        if keys.dim() != 1:
            raise ValueError(f"keys must be one-dimensional, got shape {tuple(keys.shape)}")
        self.keys = keys.to(torch.int64)
        self.position = 0

    @property
    def device(self) -> torch.device:
        return self.keys.device

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    def bits(self, columns: int) -> Tensor:
        """(B, columns) int64 hashes in [0, 2**32) of the next ``columns`` positions of every row."""
        salt = _salt(self.position, columns, self.device)
        self.position += columns
        return mix32((self.keys.unsqueeze(1) + salt.unsqueeze(0)) & _MASK)

    def uniform(self, shape: Sequence[int]) -> Tensor:
        """U[0, 1) float32 of ``shape``, whose leading dimension is the batch."""
        shape = tuple(shape)
        if not shape or shape[0] != len(self):
            raise ValueError(f"a per-sample draw needs the batch ({len(self)}) as its first dimension, got {shape}")
        per_row = 1
        for s in shape[1:]:
            per_row *= s
        u = self.bits(per_row) >> 8
        return (u.float() / 2**24).view(shape)

    def normal(self, shape: Sequence[int]) -> Tensor:
        """N(0, 1) float64 of ``shape`` (leading dimension the batch), by the Box-Muller transform."""
        u1 = self.uniform(shape).double().clamp_min(2.0**-25)
        u2 = self.uniform(shape).double()
        return torch.sqrt(-2 * torch.log(u1)) * torch.cos(2 * torch.pi * u2)

    def expand(self, count: int) -> SampleDraws:
        """Draws for ``count`` crops of every sample, rows in (sample, crop) order: a key per crop."""
        crops = torch.arange(count, device=self.device, dtype=torch.int64)
        salt = self.bits(1)  # consumes one column, so that later draws of the parent stay aligned
        return SampleDraws(mix32((salt + mix32(crops * _GOLDEN & _MASK).unsqueeze(0)) & _MASK).reshape(-1))

