"""Feature files written piece by piece and read without loading them: safetensors on disk, memory-mapped.

A dataset's patch features can be far larger than memory (VOC train at 448 px with ViT-B and 4 layers: 1,464 x 32 x
32 x 3,072 floats, 18 GB). :class:`ChunkedSafetensors` writes the header first (the shapes are known before the first
batch), then each batch at its offset, into a temporary file that is renamed over the target only when every row has
been written: a kill leaves no half-written cache entry. :func:`open_mapped` maps a tensor of such a file (or of any
safetensors file) copy-on-write, so its pages are read from disk when touched; :func:`release_rows` hands the pages
of rows already used back to the page cache, so a pass over a mapped tensor in chunks holds about one chunk in
memory (the process's resident set counts the mapped pages it has touched until they are released).
"""

from __future__ import annotations

import ctypes
import json
import mmap
import os
import struct
import tempfile
import weakref
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

from ..atomic import _commit

_DTYPES = {torch.float32: ("F32", np.float32), torch.float16: ("F16", np.float16), torch.uint8: ("U8", np.uint8),
           torch.int64: ("I64", np.int64)}
_NUMPY = {code: np_dtype for code, np_dtype in _DTYPES.values()}
_MAPPED: dict[int, np.memmap] = {}  # storage address of a mapped tensor -> its memmap


def nbytes(shape: Sequence[int], dtype: torch.dtype) -> int:
    return int(np.prod(shape, dtype=np.int64)) * torch.empty((), dtype=dtype).element_size()


class ChunkedSafetensors:
    """A safetensors file of tensors with known shapes, filled row block by row block, committed atomically.

    Args:
        path: the file to create; None writes a nameless temporary file in ``scratch_dir`` (see :meth:`commit`).
        specs: name -> (shape, dtype), in file order.
        metadata: string pairs for the header.
    """

    def __init__(self, path: Optional[Path], specs: dict[str, tuple[Sequence[int], torch.dtype]],
                 metadata: Optional[dict[str, str]] = None, scratch_dir: Optional[Path] = None) -> None:
        self.path = Path(path) if path is not None else None
        folder = self.path.parent if self.path is not None else Path(scratch_dir or tempfile.gettempdir())
        folder.mkdir(parents=True, exist_ok=True)
        header: dict = {"__metadata__": dict(metadata or {})}
        self.offsets, self.row_bytes, self.rows, self.written = {}, {}, {}, {}
        position = 0
        for name, (shape, dtype) in specs.items():
            size = nbytes(shape, dtype)
            header[name] = {"dtype": _DTYPES[dtype][0], "shape": list(shape), "data_offsets": [position, position + size]}
            self.offsets[name], self.rows[name], self.written[name] = position, int(shape[0]), 0
            self.row_bytes[name] = size // max(1, int(shape[0]))
            position += size
        blob = json.dumps(header, separators=(",", ":")).encode()
        blob += b" " * (-len(blob) % 8)  # the data starts 8-byte aligned, as the safetensors writer does
        self.data_start = 8 + len(blob)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{self.path.name if self.path else 'features'}.", suffix=".tmp")
        self.tmp = Path(tmp)
        self.file = os.fdopen(fd, "r+b")
        self.file.write(struct.pack("<Q", len(blob)) + blob)
        self.file.truncate(self.data_start + position)

    def write(self, name: str, start: int, rows: torch.Tensor) -> None:
        """Write ``rows`` as rows ``start .. start + len(rows)`` of tensor ``name``."""
        data = rows.detach().cpu().contiguous().numpy().tobytes()
        if len(data) != len(rows) * self.row_bytes[name] or start + len(rows) > self.rows[name]:
            raise ValueError(f"rows {start}..{start + len(rows)} of {name} do not fit its declared shape")
        os.pwrite(self.file.fileno(), data, self.data_start + self.offsets[name] + start * self.row_bytes[name])
        self.written[name] += len(rows)

    def commit(self) -> Path:
        """Rename the finished file over ``path`` (or, without one, return the temporary file for the caller)."""
        short = {n: (w, self.rows[n]) for n, w in self.written.items() if w != self.rows[n]}
        if short:
            raise RuntimeError(f"feature file incomplete: rows written / declared {short}")
        self.file.flush()
        self.file.close()
        if self.path is None:
            return self.tmp
        _commit(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        if not self.file.closed:
            self.file.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> "ChunkedSafetensors":
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is not None:
            self.abort()


def read_header(path: Union[str, Path]) -> tuple[dict, int]:
    """The header of a safetensors file and where its data starts."""
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(length)), 8 + length


def open_mapped(path: Union[str, Path], name: str) -> torch.Tensor:
    """Tensor ``name`` of a safetensors file, mapped copy-on-write (nothing is read until a row is touched)."""
    header, start = read_header(path)
    entry = header[name]
    shape = tuple(entry["shape"])
    if int(np.prod(shape)) == 0:
        return torch.empty(shape, dtype=next(t for t, (c, _) in _DTYPES.items() if c == entry["dtype"]))
    array = np.memmap(path, dtype=_NUMPY[entry["dtype"]], mode="c", offset=start + entry["data_offsets"][0],
                      shape=shape)
    tensor = torch.from_numpy(array)
    address = tensor.untyped_storage().data_ptr()
    _MAPPED[address] = array
    weakref.finalize(tensor, _MAPPED.pop, address, None)
    return tensor


def read_tensor(path: Union[str, Path], name: str) -> torch.Tensor:
    """Tensor ``name`` of a safetensors file, read into memory."""
    return open_mapped(path, name).clone()


def is_mapped(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` (or the tensor it is a view of) came from :func:`open_mapped`."""
    return tensor.untyped_storage().data_ptr() in _MAPPED


def release_rows(tensor: torch.Tensor, start: int, stop: int) -> None:
    """Drop rows ``start .. stop`` (along the first dimension) of a mapped tensor, or of a view of one, from this
    process's memory; they are read from disk again if touched.

    Only tensors from :func:`open_mapped` are touched, and their mapping is private and never written, so dropping
    a page loses nothing; any other tensor is left alone.
    """
    array = _MAPPED.get(tensor.untyped_storage().data_ptr())
    mm = getattr(array, "_mmap", None)
    if mm is None or not hasattr(mmap, "MADV_DONTNEED") or tensor.ndim == 0:
        return
    base = ctypes.addressof(ctypes.c_char.from_buffer(mm))
    page = mmap.PAGESIZE
    row = tensor.stride(0) * tensor.element_size()
    first = tensor.data_ptr() - base + start * row
    last = tensor.data_ptr() - base + stop * row
    first, last = first - first % page, min(len(mm), last + (-last % page))
    if last > first:
        mm.madvise(mmap.MADV_DONTNEED, first, last - first)
