"""Weights of registry entries: locate them, download them, verify them against their pins. Nothing else.

Resolution order for registry weights (documented in the README and tested), after a caller's ``pretrained_file=``
(:mod:`sslzoo.weights`):

1. a local hub folder: each directory of ``$SSLZOO_HUB`` (``os.pathsep``-separated), then the hub folder shipped
   inside the package (``sslzoo/zoo``); inside it ``<name>.<tag>/model.safetensors``;
2. the Hugging Face cache and hub through ``huggingface_hub`` (``HF_HUB_OFFLINE``, ``HF_HOME`` and
   ``HF_HUB_CACHE`` are read at call time);
3. a plain URL, downloaded (resumably, atomically) into ``$SSLZOO_CACHE/downloads``.

A file that the library resolves itself is checked against the registry's pinned sha256, or for an entry that
publishes none against the pin taken on its first verified load (:mod:`sslzoo.pins`), on every load; a mismatch is
an error naming both hashes.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

from . import registry
from .errors import ChecksumError, WeightsNotFoundError
from .download import download
from .files import PathLike, cache_dir, sha256_file
from .hf_reachable import OFFLINE_HINT, hf_offline, offline_reason
from .release_files import find_release_file

_logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
FULL_WEIGHTS_NAME = "full.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
SHIPPED_HUB = registry.ZOO_INDEX.parent  # the hub folder shipped with the package (src/sslzoo/zoo)


def local_hub_dirs() -> list[Path]:
    """Local hub folders in resolution order: ``$SSLZOO_HUB`` entries, then the shipped one."""
    env = [Path(p).expanduser() for p in os.environ.get("SSLZOO_HUB", "").split(os.pathsep) if p]
    return env + [SHIPPED_HUB]


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, from the environment at call time (``HF_HUB_CACHE``, ``HF_HOME``)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "huggingface"
    return Path(home).expanduser() / "hub"


def verify_sha256(path: PathLike, expected: Optional[str], *, recorded_in: Optional[PathLike] = None) -> str:
    """Hash ``path``; raise if it differs from ``expected`` (when one is pinned). Returns the actual hash.

    ``recorded_in`` names the ``config.json`` that recorded ``expected``, for a hub folder's own hash.
    """
    actual = sha256_file(path)
    if expected and actual != expected.lower():
        if recorded_in is not None:
            raise ChecksumError(
                f"{path} has sha256 {actual}, but its folder's {recorded_in} records {expected}: the weights were"
                " changed or damaged after the folder was written. Write the folder again (sslzoo.save_pretrained,"
                " `sslzoo publish`, `sslzoo convert`) or fetch it again."
            )
        raise ChecksumError(
            f"{path} has sha256 {actual}, but {expected} is pinned for it. The file is corrupt, truncated or not the"
            " published one: delete it and download it again (`sslzoo download NAME`)."
        )
    return actual


def hf_download(repo_id: str, filename: str, *, revision: Optional[str] = None) -> Path:
    """Fetch one file through ``huggingface_hub``: its cache first; the network unless ``HF_HUB_OFFLINE`` is set or
    the hub gives no answer to a short check (:mod:`sslzoo.hf_reachable`)."""
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


def download_dir() -> Path:
    return cache_dir() / "downloads"


def download_url(url: str, filename: str) -> Path:
    """Download ``url`` once into ``$SSLZOO_CACHE/downloads`` (resumable and atomic: :mod:`sslzoo.download`)."""
    dest = download_dir() / filename
    if dest.is_file():
        return dest
    if hf_offline():
        raise WeightsNotFoundError(f"{url} is not in {dest.parent} and HF_HUB_OFFLINE is set.")
    return download(url, dest)


def _no_weights_message(resolved: registry.Resolved, tried: list[str]) -> str:
    arch = resolved.architecture
    method = arch.method
    lines = [f"No pretrained weights could be found for '{resolved.name}' ({resolved.full_name})."]
    if tried:
        lines += ["Looked in:"] + [f"  - {t}" for t in tried]
    else:
        lines.append("sslzoo has no published weights for this architecture yet.")
    lines.append("What you can do:")
    w = resolved.weights
    if w is not None and w.convert_from:
        lines += _release_instructions(resolved, w)
    else:
        lines.append(
            f"  - pass a file: sslzoo.create_model('{resolved.name}', pretrained_file='model.safetensors')"
            " (a timm-layout state dict; safetensors or a weights-only pickle);"
        )
    if method.release and not (w and w.convert_from):
        lines.append(
            f"  - convert the authors' release ({method.release}) with `sslzoo convert --from {method.name} FILE OUT_DIR`"
            " and load 'local-dir:OUT_DIR';"
        )
    if w and w.convert_from:
        sub = w.hub_dir or resolved.full_name
        lines.append(f"  - for offline use, put the folder that `sslzoo convert` wrote at $SSLZOO_HUB/{sub}/;")
    elif w:
        sub = w.hub_dir or resolved.full_name
        lines.append(f"  - put the published folder at $SSLZOO_HUB/{sub}/ (offline use), or fetch it with `sslzoo download`;")
    lines += [
        f"  - train one: sslzoo pretrain --method {method.name} --arch {arch.name} --data PATH;",
        "  - see which names have weights: `sslzoo list --pretrained`.",
    ]
    return "\n".join(lines)


def _release_instructions(resolved: registry.Resolved, w: registry.Weights) -> list[str]:
    """How to get an entry whose file is the authors' release in an upstream layout, converted on first load."""
    repo = f"https://huggingface.co/{w.hf_hub_id}" if w.hf_hub_id else (w.url or resolved.architecture.method.release)
    if w.hf_filename:
        where = f"{repo}/blob/main/{w.hf_filename} (if it has moved, browse {repo}/tree/main)"
    else:
        where = f"{repo}/tree/main (not a fine-tuned best.pth: that is a pickled model, which sslzoo refuses to read)"
    return [
        f"  - download {w.description} from {where};",
        f"  - pass it: sslzoo.create_model('{resolved.name}', pretrained_file='FILE.pth'); it is converted from the"
        f" {w.convert_from} layout on first use and cached in {cache_dir() / 'converted'};",
        f"  - or convert it once: `sslzoo convert --from {w.convert_from} FILE.pth OUT_DIR`, then"
        " sslzoo.create_model('local-dir:OUT_DIR');",
    ]


def _unnamed_release(w: registry.Weights) -> bool:
    """An entry for a repository whose file names the registry does not know (the authors list none)."""
    return bool(w.convert_from) and w.hf_filename is None


def _listed_name(resolved: registry.Resolved, w: registry.Weights) -> str:
    """The entry's file in its repository's listing: its size, data and epochs in its layout's naming."""
    assert w.hf_hub_id and w.convert_from
    return find_release_file(w.hf_hub_id, size=resolved.architecture.size.name, dataset=w.pretrain_data,
                             epochs=w.pretrain_epochs, offline=offline_reason(), layout=w.convert_from)


def locate_registered(resolved: registry.Resolved) -> tuple[Path, str]:
    """Find the weight file of a registry entry, following the resolution order. Returns (path, source)."""
    w = resolved.weights
    if w is None:
        raise WeightsNotFoundError(_no_weights_message(resolved, []))
    sub = w.hub_dir or resolved.full_name
    tried = []
    for folder in local_hub_dirs():
        candidate = folder / sub / w.filename
        if candidate.is_file():
            return candidate, f"local hub {folder}"
        tried.append(str(candidate))
    if w.hf_hub_id and _unnamed_release(w):
        # the README names no file: the repository's listing is searched for this entry's size, data and epochs
        try:
            name = _listed_name(resolved, w)
            return hf_download(w.hf_hub_id, name), f"hf-hub:{w.hf_hub_id}/{name}"
        except WeightsNotFoundError as e:
            tried.append(f"{e} (sslzoo records no file name for this entry: the authors' README lists none)")
    elif w.hf_hub_id:
        try:
            return hf_download(w.hf_hub_id, w.hf_filename or w.filename), f"hf-hub:{w.hf_hub_id}"
        except WeightsNotFoundError as e:
            tried.append(str(e))
        if w.convert_from and w.hf_filename:  # a name from an authors' README may be wrong: the listing has the file
            try:
                name = _listed_name(resolved, w)
                if name != w.hf_filename:  # else the name was right and the file could not be fetched
                    path = hf_download(w.hf_hub_id, name)
                    _logger.warning("%s: the registry's %s is not in hf-hub:%s; using %s, the repository's file for"
                                    " that size, data and epochs.", resolved.full_name, w.hf_filename, w.hf_hub_id,
                                    name)
                    return path, f"hf-hub:{w.hf_hub_id}/{name} (listed; the registry names {w.hf_filename})"
            except WeightsNotFoundError as e:
                tried.append(f"{e} (the repository's listing, searched because {w.hf_filename} was not found)")
    if w.url:
        try:
            return download_url(w.url, f"{resolved.full_name}-{Path(w.url).name}"), w.url
        except WeightsNotFoundError as e:
            tried.append(str(e))
    raise WeightsNotFoundError(_no_weights_message(resolved, tried))


def cached_copies(resolved: registry.Resolved) -> list[Path]:
    """Every local copy of an entry's weight file (local hubs, the Hugging Face cache, sslzoo's download cache)."""
    w = resolved.weights
    if w is None:
        return []
    sub = w.hub_dir or resolved.full_name
    found = [d / sub / w.filename for d in local_hub_dirs() if (d / sub / w.filename).is_file()]
    if w.hf_hub_id and not _unnamed_release(w):
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(w.hf_hub_id, w.hf_filename or w.filename, cache_dir=hf_cache_dir())
        if isinstance(hit, str):
            found.append(Path(hit))
    if w.url:
        path = download_dir() / f"{resolved.full_name}-{Path(w.url).name}"
        if path.is_file():
            found.append(path)
    return found
