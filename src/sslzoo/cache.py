"""Where sslzoo keeps what it fetches and makes (downloads, converted checkpoints, pins, decoded data); torch-free."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """sslzoo's own cache (downloads, converted checkpoints, decoded data): ``$SSLZOO_CACHE`` or ``~/.cache/sslzoo``."""
    return Path(os.environ.get("SSLZOO_CACHE") or Path.home() / ".cache" / "sslzoo").expanduser()
