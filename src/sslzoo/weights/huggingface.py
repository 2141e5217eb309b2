"""One file of a Hugging Face repository, through ``huggingface_hub``: its cache first, the network when used now."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from ..errors import WeightsNotFoundError
from .hf_reachable import OFFLINE_HINT, offline_reason


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, from the environment at call time (``HF_HUB_CACHE``, ``HF_HOME``)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "huggingface"
    return Path(home).expanduser() / "hub"


def hf_download(repo_id: str, filename: str, *, revision: Optional[str] = None) -> Path:
    """Fetch one file through ``huggingface_hub``: its cache first; the network unless ``HF_HUB_OFFLINE`` is set or
    the hub gives no answer to a short check (:mod:`sslzoo.weights.hf_reachable`)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    offline = offline_reason()
    try:
        return Path(
            hf_hub_download(
                repo_id,
                filename,
                revision=revision,
                cache_dir=hf_cache_dir(),
                local_files_only=offline is not None,
            )
        )
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, HfHubHTTPError, OSError, ValueError) as e:
        where = f"the local Hugging Face cache ({offline})" if offline else "the Hugging Face hub"
        raise WeightsNotFoundError(
            f"hf-hub:{repo_id}/{filename} could not be fetched from {where} ({type(e).__name__})."
            + (f" {OFFLINE_HINT}" if offline else "")
        ) from e


def hf_cached(repo_id: str, filename: str) -> Optional[Path]:
    """The file in the local Hugging Face cache, or None; never the network."""
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(repo_id, filename, cache_dir=hf_cache_dir())
    return Path(hit) if isinstance(hit, str) else None
