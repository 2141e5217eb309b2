"""The converted-weights cache: an upstream file is converted once, then its hub folder is loaded.

Folders live in ``$SSLZOO_CACHE/converted/<name>.<tag>/<sha256 of the source file>/``, so a changed source file
is converted again and a damaged cache folder is caught by the hash recorded in its ``config.json``. A folder is
written under a temporary name and renamed into place, so concurrent loads never see half of one.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable, Optional

import torch

from ...files import cache_dir
from ..local_hubs import WEIGHTS_NAME
from ..hub_folder import HubFolder
from . import TIMM, convert, detect_layout, read_checkpoint, write_converted


def converted_dir(name: str, source_sha256: str) -> Path:
    """Where the converted folder of registry entry ``name`` made from the source file with this hash lives."""
    return cache_dir() / "converted" / name / source_sha256


def _write_folder_atomically(folder: Path, write: Callable[[Path], Path]) -> None:
    tmp = folder.parent / f".{folder.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    if folder.exists() and not (folder / WEIGHTS_NAME).is_file():  # a folder someone emptied by hand
        shutil.rmtree(folder)
    try:
        write(tmp)
        try:
            os.replace(tmp, folder)
        except OSError:
            if not (folder / WEIGHTS_NAME).is_file():  # not a concurrent conversion that finished first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_converted(
    path: Path, source_sha256: str, *, name: str, layout: str, num_heads: Optional[int] = None
) -> tuple[dict[str, torch.Tensor], Path, bool]:
    """The timm-layout state dict of the upstream file at ``path``, converting it on first use.

    A file that is already a timm-layout backbone (e.g. a folder converted by ``sslzoo convert``) is loaded as is.

    Returns:
        (state dict, path of the weight file it was read from, whether a conversion happened in this call).
    """
    folder = converted_dir(name, source_sha256)
    converted_now = False
    if not (folder / WEIGHTS_NAME).is_file():
        obj = read_checkpoint(path)
        if detect_layout(obj) == TIMM:
            return obj, path, False
        converted = convert(obj, layout, num_heads=num_heads)
        converted.source_name, converted.source_sha256 = path.name, source_sha256
        _write_folder_atomically(folder, lambda tmp: write_converted(converted, tmp, name=name, write_full=False))
        converted_now = True
    state_dict, _ = HubFolder.open(f"local-dir:{folder}").load_state_dict()
    return state_dict, folder / WEIGHTS_NAME, converted_now
