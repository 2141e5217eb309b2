"""The generic file I/O every part of sslzoo uses: the cache folder, sha256, atomic writes, safe checkpoint reading.

Writes go to a temporary file in the target's folder, are fsynced and renamed over the target, so a kill never leaves
a partial file, and the result gets the permissions of any new file (the umask's). Checkpoints are read without
executing code: safetensors, or a pickle through ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Optional, Union

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .atomic import atomic_file, write_text_atomic  # noqa: F401 - part of this module's interface
from .cache import cache_dir  # noqa: F401 - part of this module's interface
from .errors import CheckpointFormatError, SslzooError, UnsafeCheckpointError, WeightsNotFoundError

PathLike = Union[str, os.PathLike]


def sha256_file(path: PathLike, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


def load_checkpoint(path: PathLike) -> Any:
    """Read a checkpoint without executing code: safetensors, or a pickle through ``weights_only=True``.

    Raises:
        WeightsNotFoundError: no such file.
        UnsafeCheckpointError: the pickle holds objects other than tensors and containers (e.g. a whole module).
        CheckpointFormatError: the file is truncated or not a checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"No weight file at {path}.")
    if path.suffix == ".safetensors":
        try:
            return load_file(path, device="cpu")
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointFormatError(f"{path} is not a readable safetensors file (truncated or corrupt?): {e}") from e
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsafeCheckpointError(
            f"{path} is a pickle that holds Python objects, not only tensors (for example a whole model saved with"
            " torch.save(model)). sslzoo never unpickles code. In the environment that wrote it, load it and save"
            " `model.state_dict()` instead, then pass that file. Detail: " + str(e).splitlines()[0]
        ) from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as e:
        raise CheckpointFormatError(f"{path} is not a readable PyTorch checkpoint (truncated or corrupt?): {e}") from e


def load_state_dict(path: PathLike) -> dict[str, torch.Tensor]:
    """A flat ``{name: tensor}`` state dict from ``path`` (see :func:`load_checkpoint`)."""
    obj = load_checkpoint(path)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointFormatError(
            f"{path} is not a flat state dict of tensors. If it is a training checkpoint of APS, PatchMix, DINO/ADCLR"
            " or MoCo v3, convert it with `sslzoo convert --from auto FILE OUT_DIR`."
        )
    return obj


def safetensors_metadata(path: PathLike) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def _sort_safetensors_metadata(path: Path) -> None:
    """Rewrite a safetensors header with its metadata in sorted order, in place.

    safetensors writes the metadata map in a random order, so saving the same tensors twice gave different bytes (and
    sha256s); sorted, a file is a function of its content. The header keeps its length, so the data does not move.
    """
    with open(path, "r+b") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
        if "__metadata__" not in header:
            return
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        if len(text) > size:  # pragma: no cover - the same keys and values re-serialise to the same length
            raise SslzooError(f"Could not normalise the safetensors header of {path}.")
        f.seek(8)
        f.write(text.ljust(size, b" "))


def save_safetensors(tensors: dict[str, torch.Tensor], path: PathLike, metadata: Optional[dict[str, str]] = None) -> Path:
    """Write tensors atomically (temporary file in the same folder, then rename); the same input gives the same bytes."""
    path = Path(path)
    with atomic_file(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
        _sort_safetensors_metadata(tmp)
    return path


def save_torch_atomic(obj: Any, path: PathLike) -> Path:
    """``torch.save`` through a temporary file in the same folder, then rename: a kill never leaves a partial file."""
    path = Path(path)
    with atomic_file(path) as tmp:
        torch.save(obj, tmp)
    return path
