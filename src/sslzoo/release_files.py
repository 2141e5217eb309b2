"""The file of an authors' release whose README names none, found in its Hugging Face repository's file list.

The APS README links only ``huggingface.co/visresearch/aps``; its own example path is
``weight/pretrain/cifar100/small_1600ep_5e-4_100.pth``. An entry (size, data set, epochs) matches the files under
``pretrain/<dataset>/`` named ``<size>_<epochs>ep...``. The listing comes from ``huggingface_hub`` when online and is
cached in ``$SSLZOO_CACHE/listings/``, so that ``HF_HUB_OFFLINE`` runs use the last listing seen.
"""

from __future__ import annotations

import json
import re
from typing import Optional, Union

from .atomic import write_text_atomic
from .cache import cache_dir
from .errors import WeightsNotFoundError
from .hf_reachable import OFFLINE_HINT

_DATASETS = {"CIFAR-10": "cifar10", "CIFAR-100": "cifar100", "ImageNet-1K": "imagenet1k"}


def _listing_path(repo_id: str):
    return cache_dir() / "listings" / f"{repo_id.replace('/', '--')}.json"


def repo_files(repo_id: str, *, offline: Union[bool, str, None]) -> list[str]:
    """The repository's file names: listed online (and cached), or the cached listing when offline (True, or the
    reason why the hub is not used now, from :func:`sslzoo.hf_reachable.offline_reason`)."""
    path = _listing_path(repo_id)
    if not offline:
        from huggingface_hub import list_repo_files

        try:
            names = sorted(list_repo_files(repo_id))
        except Exception as e:  # noqa: BLE001 - any hub failure falls back to the last listing, or says what failed
            if not path.is_file():
                raise WeightsNotFoundError(f"hf-hub:{repo_id}: its file list could not be read "
                                           f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}).") from e
        else:
            write_text_atomic(path, json.dumps(names, indent=1) + "\n")
            return names
    if not path.is_file():
        why = offline if isinstance(offline, str) else "HF_HUB_OFFLINE is set"
        raise WeightsNotFoundError(f"hf-hub:{repo_id}: {why} and its file list was never read online (cached "
                                   f"listings: {path.parent}). {OFFLINE_HINT}")
    return json.loads(path.read_text(encoding="utf-8"))


def match_release(names: list[str], *, size: str, dataset: str, epochs: Optional[int]) -> Optional[str]:
    """The file of ``size`` (tiny/small/base) pre-trained on ``dataset`` for ``epochs``, or None."""
    data = _DATASETS.get(dataset, dataset.lower())
    pattern = re.compile(rf"(^|/)pretrain/{re.escape(data)}/{size}_{epochs}ep[^/]*\.pth$")
    found = sorted(n for n in names if pattern.search(n))
    return found[0] if found else None


def find_release_file(repo_id: str, *, size: str, dataset: str, epochs: Optional[int],
                      offline: Union[bool, str, None]) -> str:
    names = repo_files(repo_id, offline=offline)
    hit = match_release(names, size=size, dataset=dataset, epochs=epochs)
    if hit is None:
        shown = ", ".join(names[:40]) + (" ..." if len(names) > 40 else "")
        raise WeightsNotFoundError(f"hf-hub:{repo_id} has no pre-training file for {size}, {dataset}, {epochs} epochs "
                                   f"(expected pretrain/{_DATASETS.get(dataset, dataset)}/{size}_{epochs}ep*.pth); "
                                   f"its files: {shown or 'none'}.")
    return hit
