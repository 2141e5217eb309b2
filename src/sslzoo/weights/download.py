"""Plain-URL downloads: one resumable, atomic path with a progress bar (the registry's ``url`` sources).

The bytes go to ``<dest>.partial``; an interrupted download keeps them, and the next attempt asks the server for the
rest (an HTTP ``Range`` request; a server that ignores it sends the whole file again, which replaces the partial
one). Only a complete file (its ``Content-Length`` reached) is renamed to ``dest``, so a reader never sees half a
file. The caller verifies the hash (:func:`sslzoo.weights.checksum.verify_sha256`).
"""

from __future__ import annotations

import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

from ..cache import cache_dir
from ..errors import WeightsNotFoundError
from .hf_reachable import hf_offline

CHUNK = 1 << 20
TIMEOUT_S = 60


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def download(url: str, dest: Path, *, progress: bool = True) -> Path:
    """``url`` as the file ``dest`` (kept if it exists); raises :class:`WeightsNotFoundError` on failure."""
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    try:
        _fetch(url, partial, progress=progress)
    except urllib.error.HTTPError as e:
        raise WeightsNotFoundError(f"Could not download {url}: HTTP {e.code} {e.reason}.") from e
    except (OSError, http.client.HTTPException) as e:
        kept = _size(partial)
        more = f" {kept} bytes are kept in {partial}; the next attempt continues from there." if kept else ""
        raise WeightsNotFoundError(f"Could not download {url} ({type(e).__name__}: {e}).{more}") from e
    os.replace(partial, dest)
    return dest


def _fetch(url: str, partial: Path, *, progress: bool) -> None:
    have = _size(partial)
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to send: the partial file is the whole file
            return
        raise
    with response:
        if have and response.status != 206:  # the server ignored the range: start again
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        from tqdm import tqdm

        with open(partial, "ab" if have else "wb") as f, tqdm(
                total=total, initial=have, unit="B", unit_scale=True, desc=partial.name[: -len(".partial")],
                disable=not progress, leave=False) as bar:
            while block := response.read(CHUNK):
                f.write(block)
                bar.update(len(block))
    if total is not None and _size(partial) != total:
        raise http.client.IncompleteRead(b"", total - _size(partial))


def download_dir() -> Path:
    return cache_dir() / "downloads"


def download_url(url: str, filename: str) -> Path:
    """Download ``url`` once into ``$SSLZOO_CACHE/downloads`` as ``filename`` (resumable and atomic)."""
    dest = download_dir() / filename
    if dest.is_file():
        return dest
    if hf_offline():
        raise WeightsNotFoundError(f"{url} is not in {dest.parent} and HF_HUB_OFFLINE is set.")
    return download(url, dest)
