"""The weights of a registry entry, end to end: a caller's file or the resolved one, verified, read, converted.

Every source is checked: a file the library resolves against the registry's pin (:mod:`sslzoo.hub`); a
``pretrained_file=`` hub folder against the sha256 recorded in its ``config.json``; and a ``pretrained_file=`` (file
or folder) given for a name that spells out a pinned tag (``NAME.tag``) against that pin. An entry with
``convert_from`` names a file in an upstream layout (the authors' release): it is converted on first load and the
converted weights are cached (:mod:`sslzoo.convert.cache`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from . import registry
from .convert.cache import load_converted
from .errors import ChecksumError
from .files import PathLike, load_state_dict
from .hub import locate_registered, verify_sha256
from .hub_folder import open_given

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
        return _load_converted(resolved, w, path, sha, "pretrained_file", announce_hash=False)
    return LoadedWeights(load_state_dict(path), path, sha, "pretrained_file")


def load_registered_weights(resolved: registry.Resolved, pretrained_file: Optional[PathLike] = None) -> LoadedWeights:
    """Locate, verify (pinned sha256) and read the weights of a registry entry.

    Every source is checked: a file the library resolves against the registry's pin; a ``pretrained_file=`` hub
    folder against the sha256 recorded in its ``config.json``; and a ``pretrained_file=`` (file or folder) given for
    a name that spells out a pinned tag (``NAME.tag``) against that pin. A file for a name without a tag is the
    caller's own choice: it is not held to a pin, and its hash is recorded.
    An entry with ``convert_from`` names a file in an upstream layout (the authors' release): it is converted on
    first load and the converted weights are cached, keyed by the source file's sha256 (see
    :mod:`sslzoo.convert.cache`); the sha256 is that of the source file, which is what the registry pins.
    """
    if pretrained_file is not None:
        return _load_given(resolved, pretrained_file)
    path, source = locate_registered(resolved)
    w = resolved.weights
    pinned = w.sha256 if w else None
    sha = verify_sha256(path, pinned)
    if w is not None and w.convert_from:
        return _load_converted(resolved, w, path, sha, source, announce_hash=not pinned)
    return LoadedWeights(load_state_dict(path), path, sha, source)


def _load_converted(
    resolved: registry.Resolved, w: registry.Weights, path: Path, sha: str, source: str, *, announce_hash: bool
) -> LoadedWeights:
    assert w.convert_from is not None
    sd, weights_path, converted_now = load_converted(
        path, sha, name=resolved.full_name, layout=w.convert_from, num_heads=resolved.architecture.num_heads
    )
    if converted_now:
        _logger.info("%s: converted %s from the %s layout; cached in %s.", resolved.full_name, path.name,
                     w.convert_from, weights_path.parent)
        if announce_hash:
            _logger.warning('sha256 of %s: %s (not pinned). To pin it, set sha256="%s" in the %s entry of'
                            " sslzoo/registry.py WEIGHTS; any other file is then refused.", path.name, sha, sha,
                            resolved.full_name)
    return LoadedWeights(sd, weights_path, sha, f"{source}, converted from the {w.convert_from} layout")
