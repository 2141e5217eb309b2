"""The image files of a training split: an ImageFolder tree or a file list with labels, listed once and cached.

Listing ImageNet's 1.28 M files walks 1,000 folders; a restart should not do it again. The listing is cached under
``<cache>/file_lists/`` keyed by the split folder's path and the modification times of it and of every class folder
(adding or removing a file changes its folder's time), so a changed tree is listed afresh and an unchanged one is
read back in a fraction of a second.

A file list is a text file with one ``path label`` per line (``#`` comments and blank lines ignored); relative paths
are relative to the list's folder, labels are integers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from sslzoo import files
from sslzoo.data import DatasetFormatError, DatasetNotFoundError
from sslzoo.data.folders import imagefolder_listing, split_folder

_logger = logging.getLogger(__name__)
LIST_SUFFIXES = (".txt", ".lst", ".csv")


@dataclass(frozen=True)
class FileList:
    """The image paths of one split and their integer labels."""

    paths: list[str]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, limit: int | None, seed: int) -> FileList:
        """A seeded random subset of ``limit`` files, in listing order (the rule of ``training.data.load_split``)."""
        if limit is None or limit >= len(self):
            return self
        keep = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:limit].sort().values
        return FileList([self.paths[i] for i in keep.tolist()], [self.labels[i] for i in keep.tolist()])


def is_list_file(path: str | Path) -> bool:
    p = Path(path)
    return p.suffix.lower() in LIST_SUFFIXES and p.is_file()


def read_list_file(path: str | Path) -> FileList:
    """A ``path label`` list (see the module docstring)."""
    path = Path(path).expanduser()
    base = path.parent
    paths, labels = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, label = line.replace(",", " ").rpartition(" ")
        try:
            value = int(label)
        except ValueError:
            value = None
        if not sep or not name.strip() or value is None:
            raise DatasetFormatError(f"{path}:{number}: expected 'path label' (an integer label), got {line!r}.")
        paths.append(str((base / name.strip()).resolve()) if not os.path.isabs(name.strip()) else name.strip())
        labels.append(value)
    if not paths:
        raise DatasetFormatError(f"{path} lists no images; write one 'path label' per line.")
    return FileList(paths, labels)


def _tree_key(root: Path, split: str) -> str:
    """The cache key of a tree: its path, the split, and the modification times of its folders (not of its files)."""
    folder = split_folder(root, split)
    h = hashlib.sha256(f"{root.resolve()}\0{split}\0{folder.stat().st_mtime_ns}".encode())
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.is_dir():
            h.update(f"{entry.name}\0{entry.stat().st_mtime_ns}\n".encode())
    return h.hexdigest()


def list_image_files(root: str | Path, split: str = "train", *, cache_dir: str | Path | None = None,
                     split_fraction: float = 0.1, seed: int = 0) -> FileList:
    """The files of ``split`` of an ImageFolder tree (``train/`` and ``val/`` or ``test/`` with class folders, or
    class folders only, split by ``split_fraction``) or of a file list; tree listings are cached."""
    if is_list_file(root):
        return read_list_file(root)
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetNotFoundError(f"the data folder {root} does not exist; pass an ImageFolder tree (train/ with "
                                   "class folders) or a file list of 'path label' lines.")
    if not root.is_dir():
        raise DatasetNotFoundError(f"{root} is neither an ImageFolder tree nor a file list ('path label' lines, "
                                   f"suffix {' or '.join(LIST_SUFFIXES)}).")
    cache = (Path(cache_dir).expanduser() if cache_dir else files.cache_dir()) / "file_lists"
    path = cache / f"{_tree_key(root, split)}-{split_fraction}-{seed}.json"
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return FileList([str(root / p) for p in data["paths"]], data["labels"])
        except (OSError, ValueError, KeyError) as e:
            _logger.warning("Ignoring unreadable file-list cache %s (%s); listing %s again.", path, e, root)
    listing = imagefolder_listing(root, split, None, split_fraction, seed)
    out = FileList([str(p) for p in listing.files], listing.labels)
    cache.mkdir(parents=True, exist_ok=True)
    payload = {"root": str(root), "split": split, "classes": listing.classes,
               "paths": [str(p.relative_to(root)) for p in listing.files], "labels": listing.labels}
    files.write_text_atomic(path, json.dumps(payload))
    return out
