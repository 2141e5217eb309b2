"""The weights of a registry entry, end to end: a caller's file or the resolved one, verified, read, converted.

Every source is checked: a file the library resolves against the registry's pin (:mod:`sslzoo.weights.locate`); a
``pretrained_file=`` hub folder against the sha256 recorded in its ``config.json``; and a ``pretrained_file=`` (file
or folder) given for a name that spells out a pinned tag (``NAME.tag``) against that pin. An entry with
``convert_from`` names a file in an upstream layout (the authors' release): it is converted on first load and the
converted weights are cached (:mod:`sslzoo.weights.convert.cache`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from .. import registry
from .convert.cache import load_converted
from ..errors import ChecksumError
from ..files import PathLike, load_state_dict
from .checksum import verify_sha256
from .download import download_dir
from .local_hubs import local_hub_dirs
from .locate import locate_registered
from .hub_folder import open_given
from .pins import first_use_pin, pin_file, record_pin

_logger = logging.getLogger(__name__)


@dataclass
class LoadedWeights:
    state_dict: dict[str, torch.Tensor]
    path: Path
    sha256: str
    source: str


def _check_given_against_pin(resolved: registry.Resolved, path: Path, sha: str, what: str) -> None:
    """A file passed for a name that spells out a pinned tag must be the pinned file."""
    w = resolved.weights
    if w is None or not w.sha256 or not resolved.tag_given or sha == w.sha256.lower():
        return
    untagged = registry.split_tag(resolved.name)[0]
    raise ChecksumError(
        f"{path} ({what}) has sha256 {sha}, but the tag '{w.tag}' of {resolved.full_name} pins {w.sha256}: it is not"
        f" the published file. To load other weights on purpose, name the architecture without the tag"
        f" ('{untagged}'), or load a hub folder as 'local-dir:PATH'."
    )


def _load_given(resolved: registry.Resolved, pretrained_file: PathLike) -> LoadedWeights:
    """``pretrained_file=``: checked as every other source is (see :func:`load_registered_weights`)."""
    given = open_given(pretrained_file)
    path, sha, w = given.path, given.sha256, resolved.weights
    if given.folder is not None:
        if w is not None and w.convert_from:
            # a converted folder stands for the upstream file it came from, which is what a convert_from entry pins
            origin = (given.folder.sslzoo_cfg.get("converted_from") or {}).get("sha256") or "unknown (not recorded)"
            _check_given_against_pin(resolved, path, origin, "the upstream file this folder was converted from")
        else:
            _check_given_against_pin(resolved, path, sha, "the weights of a hub folder")
        return LoadedWeights(load_state_dict(path), path, sha, "pretrained_file (hub folder)")
    _check_given_against_pin(resolved, path, sha, "pretrained_file")
    if w is not None and w.convert_from:
        return _load_converted(resolved, w, path, sha, "pretrained_file")
    return LoadedWeights(load_state_dict(path), path, sha, "pretrained_file")


def load_registered_weights(resolved: registry.Resolved, pretrained_file: Optional[PathLike] = None) -> LoadedWeights:
    """Locate, verify (pinned sha256) and read the weights of a registry entry.

    Every source is checked: a file the library resolves against the registry's pin; a ``pretrained_file=`` hub
    folder against the sha256 recorded in its ``config.json``; and a ``pretrained_file=`` (file or folder) given for
    a name that spells out a pinned tag (``NAME.tag``) against that pin. A file for a name without a tag is the
    caller's own choice: it is not held to a pin, and its hash is recorded.
    An entry with ``convert_from`` names a file in an upstream layout (the authors' release): it is converted on
    first load and the converted weights are cached, keyed by the source file's sha256 (see
    :mod:`sslzoo.weights.convert.cache`); the sha256 is that of the source file, which is what the registry pins.
    """
    if pretrained_file is not None:
        return _load_given(resolved, pretrained_file)
    path, source = locate_registered(resolved)
    w = resolved.weights
    # a folder of the user's own local hub is theirs; a remote source (Hugging Face, a URL) may change upstream
    remote = not any(path.is_relative_to(folder) for folder in local_hub_dirs())
    first_use = first_use_pin(resolved.full_name) if remote and w is not None and not w.sha256 else None
    try:
        sha = verify_sha256(path, w.sha256 if w else None)
        if first_use is not None and sha != first_use["sha256"]:
            raise ChecksumError(
                f"{path} has sha256 {sha}, but {resolved.full_name} was pinned to {first_use['sha256']} on its first"
                f" verified load ({first_use['date']}, from {first_use['source']}; {pin_file()}). The upstream file"
                f" changed or this copy is damaged. If the change is intended, re-pin: sslzoo verify --repin"
                f" {resolved.full_name}")
    except ChecksumError as e:
        if path.parent == download_dir():  # sslzoo's own download: remove it, so that the next load fetches again
            path.unlink(missing_ok=True)
            raise ChecksumError(f"{e} The downloaded file was removed.") from None
        raise
    if w is not None and w.convert_from:
        loaded = _load_converted(resolved, w, path, sha, source)
    else:
        loaded = LoadedWeights(load_state_dict(path), path, sha, source)
    if remote and w is not None and not w.sha256 and first_use is None:  # read (and converted): verified
        record_pin(resolved.full_name, sha, source=source, revision=_hf_revision(path))
        _logger.info("%s: pinned to sha256 %s on first use (%s).", resolved.full_name, sha, pin_file())
    return loaded


def _hf_revision(path: Path) -> Optional[str]:
    """The Hugging Face commit a cached file came from (``.../snapshots/<commit>/<file>``), if it is one."""
    parts = path.parts
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts[:-1] else None


def _load_converted(
    resolved: registry.Resolved, w: registry.Weights, path: Path, sha: str, source: str
) -> LoadedWeights:
    assert w.convert_from is not None
    sd, weights_path, converted_now = load_converted(
        path, sha, name=resolved.full_name, layout=w.convert_from, num_heads=resolved.architecture.num_heads
    )
    if converted_now:
        _logger.info("%s: converted %s from the %s layout; cached in %s.", resolved.full_name, path.name,
                     w.convert_from, weights_path.parent)
    return LoadedWeights(sd, weights_path, sha, f"{source}, converted from the {w.convert_from} layout")
