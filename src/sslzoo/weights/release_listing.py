"""The file of an authors' release found in its Hugging Face repository's file list, where a README names none or
names one the repository does not have.

The APS README links only ``huggingface.co/visresearch/aps``; its own example path is
``weight/pretrain/cifar100/small_1600ep_5e-4_100.pth``: an entry (size, data set, epochs) matches the files under
``pretrain/<dataset>/`` named ``<size>_<epochs>ep...``. The PatchMix README names its files
(``pretrain/cifar10/vit-small-800-94.6.pth``) but has mistakes (an accuracy in a name that differs from the file's,
``imagenet-1k`` beside ``imagenet1k``): an entry matches ``pretrain/<dataset>/vit-<size>-<epochs>...``, the data set
with or without a hyphen before its number. The listing comes from ``huggingface_hub`` when online and is cached in
``$SSLZOO_CACHE/listings/``, so that offline runs use the last listing seen.
"""

from __future__ import annotations

import json
import re
from typing import Optional, Union

from ..atomic import write_text_atomic
from ..cache import cache_dir
from ..errors import WeightsNotFoundError
from .hf_reachable import OFFLINE_HINT

_DATASETS = {"CIFAR-10": "cifar10", "CIFAR-100": "cifar100", "ImageNet-1K": "imagenet1k"}
# layout -> the file name of a pre-training checkpoint, after pretrain/<dataset>/ ({size}, {epochs} filled in)
_NAMES = {"aps": r"{size}_{epochs}ep[^/]*\.pth", "patchmix": r"vit-{size}-{epochs}(-[^/]*)?\.pth"}
_SHOWN = {"aps": "{size}_{epochs}ep*.pth", "patchmix": "vit-{size}-{epochs}-*.pth"}


def _listing_path(repo_id: str):
    return cache_dir() / "listings" / f"{repo_id.replace('/', '--')}.json"


def repo_files(repo_id: str, *, offline: Union[bool, str, None]) -> list[str]:
    """The repository's file names: listed online (and cached), or the cached listing when offline (True, or the
    reason why the hub is not used now, from :func:`sslzoo.weights.hf_reachable.offline_reason`)."""
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


def match_release(names: list[str], *, size: str, dataset: str, epochs: Optional[int],
                  layout: str = "aps") -> Optional[str]:
    """The file of ``size`` (tiny/small/base) pre-trained on ``dataset`` for ``epochs`` in ``layout``'s naming."""
    data = re.sub(r"(?<=[a-z])(?=\d)", "-?", re.escape(_DATASETS.get(dataset, dataset.lower())))  # imagenet-?1k
    pattern = re.compile(rf"(^|/)pretrain/{data}/" + _NAMES[layout].format(size=size, epochs=epochs) + "$")
    found = sorted(n for n in names if pattern.search(n))
    return found[0] if found else None


def find_release_file(repo_id: str, *, size: str, dataset: str, epochs: Optional[int],
                      offline: Union[bool, str, None], layout: str = "aps") -> str:
    names = repo_files(repo_id, offline=offline)
    hit = match_release(names, size=size, dataset=dataset, epochs=epochs, layout=layout)
    if hit is None:
        shown = ", ".join(names[:40]) + (" ..." if len(names) > 40 else "")
        expected = f"pretrain/{_DATASETS.get(dataset, dataset)}/" + _SHOWN[layout].format(size=size, epochs=epochs)
        raise WeightsNotFoundError(f"hf-hub:{repo_id} has no pre-training file for {size}, {dataset}, {epochs} epochs "
                                   f"(expected {expected}); its files: {shown or 'none'}.")
    return hit
