"""Keep the memory a CPU training step frees inside the process, so the next step does not fault it in again.

A step allocates and frees the same large activations every iteration (8.9 MB per MLP activation of the micro
ViT/8 at batch 256). glibc's malloc hands blocks above its mmap threshold back to the kernel on ``free`` and trims
the heap top above its trim threshold, so every iteration maps those pages anew and the kernel zero-fills each one
on first touch: about 98,000 minor page faults per micro ViT/8 MoCo v3 iteration here, which make the memory-bound
ops (GELU, LayerNorm, the bias copies of addmm) several times slower than on warm memory. Raising both thresholds
keeps the freed blocks on the heap, as jemalloc or tcmalloc would (83 faults per iteration; see
``benchmarks/train_step.py``). Only where the memory is reused changes, never a value, so results are bit-identical.
The cost: the process keeps its peak heap until it exits instead of returning it between steps.

Other C libraries (macOS, musl) have no ``mallopt`` with these parameters; there nothing is changed.
"""

from __future__ import annotations

import ctypes
import logging
import platform

_logger = logging.getLogger(__name__)

# glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# blocks up to 1 GiB stay on the heap (a ViT-S/16 MLP activation at batch 128 is 155 MB); glibc releases before
# 2.26 cap the threshold at HEAP_MAX_SIZE / 2 (32 MiB on 64-bit) and refuse more, so that is the fallback
_MMAP_THRESHOLDS = (1 << 30, 32 << 20)
_TRIM_THRESHOLD = 2**31 - 1

ALLOCATOR_MODES = ("retain", "system")


def glibc() -> ctypes.CDLL | None:
    """The process's glibc, or None on another C library."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")  # glibc's soname on every Linux architecture it supports
    except OSError:
        return None


def retain_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process (and the workers it forks later).

    Returns:
        True when both were set; False on a C library without them (nothing changed).
    """
    libc = glibc()
    if libc is None:
        _logger.debug("Not glibc: the CPU allocator is left as it is.")
        return False
    mmap_set = any(libc.mallopt(_M_MMAP_THRESHOLD, value) == 1 for value in _MMAP_THRESHOLDS)
    ok = mmap_set and libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1
    if not ok:
        _logger.warning("glibc refused the allocator thresholds (mallopt); CPU steps keep page-faulting freed memory.")
    return ok
