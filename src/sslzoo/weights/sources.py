"""Where a registry entry's weight file may be: one small object per kind of source, listed in resolution order.

A source knows where it looks (:meth:`Source.locate`), what it keeps on this machine (:meth:`Source.cached`, never
the network) and how it describes a miss (:meth:`Source.tried`, a line of the "Looked in" list). The order
(:func:`sources_for`), documented in the README and tested:

1. each local hub folder (:func:`sslzoo.weights.local_hubs.local_hub_dirs`): ``<folder>/<entry>/<file>``;
2. the Hugging Face repository: the named file (the hub's cache first), and for an authors' release whose README
   name may be wrong, the repository's listing; for a release whose README names no file, the listing only;
3. a plain URL, downloaded (resumably, atomically) into ``$SSLZOO_CACHE/downloads``.

A new kind of source is one class here and one line in :func:`sources_for`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from .. import registry
from ..errors import WeightsNotFoundError
from .download import download_dir, download_url
from .hf_reachable import offline_reason
from .huggingface import hf_cached, hf_download
from .local_hubs import entry_dir, local_hub_dirs
from .release_listing import find_release_file

_logger = logging.getLogger(__name__)

Found = tuple[Path, str]  # the file, and how it was found (shown by `sslzoo download` and in notices)


class Source:
    """One place a registry entry's weight file may come from."""

    def locate(self) -> Optional[Found]:
        """The file, fetched if need be; None when there is nothing here and nothing to report.

        Raises:
            WeightsNotFoundError: saying what was tried (see :meth:`tried`).
        """
        raise NotImplementedError

    def cached(self) -> Optional[Path]:
        """The copy of the file on this machine, or None; never the network."""
        return None

    def tried(self, error: WeightsNotFoundError) -> str:
        """The line of the "Looked in" list after :meth:`locate` failed with ``error``."""
        return str(error)


class LocalHub(Source):
    """``<folder>/<entry>/<file>`` in a local hub folder (``$SSLZOO_HUB`` or the shipped one)."""

    def __init__(self, folder: Path, entry: str, filename: str) -> None:
        self.folder, self.path = folder, folder / entry / filename

    def locate(self) -> Optional[Found]:
        if self.path.is_file():
            return self.path, f"local hub {self.folder}"
        raise WeightsNotFoundError(str(self.path))

    def cached(self) -> Optional[Path]:
        return self.path if self.path.is_file() else None


class HuggingFaceFile(Source):
    """A named file of a Hugging Face repository."""

    def __init__(self, repo_id: str, filename: str) -> None:
        self.repo_id, self.filename = repo_id, filename

    def locate(self) -> Optional[Found]:
        return hf_download(self.repo_id, self.filename), f"hf-hub:{self.repo_id}"

    def cached(self) -> Optional[Path]:
        return hf_cached(self.repo_id, self.filename)


class HuggingFaceListing(Source):
    """An authors' release found in its repository's file list by size, data and epochs
    (:mod:`sslzoo.weights.release_listing`): where the README names no file, or names one the repository lacks
    (``instead_of``)."""

    def __init__(self, resolved: registry.Resolved, *, why: str, instead_of: Optional[str] = None) -> None:
        self.resolved, self.why, self.instead_of = resolved, why, instead_of

    def locate(self) -> Optional[Found]:
        w = self.resolved.weights
        assert w is not None and w.hf_hub_id and w.convert_from
        name = find_release_file(w.hf_hub_id, size=self.resolved.architecture.size.name, dataset=w.pretrain_data,
                                 epochs=w.pretrain_epochs, offline=offline_reason(), layout=w.convert_from)
        if self.instead_of is None:
            return hf_download(w.hf_hub_id, name), f"hf-hub:{w.hf_hub_id}/{name}"
        if name == self.instead_of:  # the registry's name was right; the file could not be fetched (said before)
            return None
        path = hf_download(w.hf_hub_id, name)
        _logger.warning("%s: the registry's %s is not in hf-hub:%s; using %s, the repository's file for that size,"
                        " data and epochs.", self.resolved.full_name, self.instead_of, w.hf_hub_id, name)
        return path, f"hf-hub:{w.hf_hub_id}/{name} (listed; the registry names {self.instead_of})"

    def tried(self, error: WeightsNotFoundError) -> str:
        return f"{error} ({self.why})"


class Url(Source):
    """A plain URL, downloaded once into ``$SSLZOO_CACHE/downloads`` as ``<full name>-<file name>``."""

    def __init__(self, url: str, filename: str) -> None:
        self.url, self.filename = url, filename

    def locate(self) -> Optional[Found]:
        return download_url(self.url, self.filename), self.url

    def cached(self) -> Optional[Path]:
        path = download_dir() / self.filename
        return path if path.is_file() else None


def unnamed_release(w: registry.Weights) -> bool:
    """An entry for a repository whose file names the registry does not know (the authors list none)."""
    return bool(w.convert_from) and w.hf_filename is None


def sources_for(resolved: registry.Resolved) -> list[Source]:
    """Where the entry's weight file may be, in resolution order (none for an entry without weights)."""
    w = resolved.weights
    if w is None:
        return []
    sources: list[Source] = [LocalHub(folder, entry_dir(resolved), w.filename) for folder in local_hub_dirs()]
    if w.hf_hub_id and unnamed_release(w):
        sources.append(HuggingFaceListing(
            resolved, why="sslzoo records no file name for this entry: the authors' README lists none"))
    elif w.hf_hub_id:
        sources.append(HuggingFaceFile(w.hf_hub_id, w.hf_filename or w.filename))
        if w.convert_from and w.hf_filename:  # a name from an authors' README may be wrong: the listing has the file
            sources.append(HuggingFaceListing(
                resolved, why=f"the repository's listing, searched because {w.hf_filename} was not found",
                instead_of=w.hf_filename))
    if w.url:
        sources.append(Url(w.url, f"{resolved.full_name}-{Path(w.url).name}"))
    return sources
