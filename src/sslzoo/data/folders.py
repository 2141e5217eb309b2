"""ImageFolder trees: the class folders, the images of each, the split folders and a seeded held-out split."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from .decode import FORMATS_HINT, IMAGE_EXTENSIONS, DatasetFormatError, DatasetNotFoundError, fingerprint_files

DEFAULT_SPLIT_FRACTION = 0.1  # the share of each class held out as test in a tree without split folders


@dataclass(frozen=True)
class Listing:
    """The image files of one ImageFolder split, before decoding."""

    files: list[Path]
    labels: list[int]
    classes: list[str]
    fingerprint: str


def _class_folders(folder: Path) -> list[str]:
    classes = sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise DatasetFormatError(f"{folder} has no class folders. Expected {FORMATS_HINT}.")
    return classes


def _images_of(folder: Path, classes: list[str]) -> tuple[list[Path], list[int]]:
    files, labels, empty = [], [], []
    for label, cls in enumerate(classes):
        found = sorted(
            Path(dirpath) / f
            for dirpath, _, names in os.walk(folder / cls, followlinks=True)
            for f in names
            if f.lower().endswith(IMAGE_EXTENSIONS)
        )
        if not found:
            empty.append(cls)
        files += found
        labels += [label] * len(found)
    if empty:
        raise DatasetFormatError(
            f"Class folders without images in {folder}: {', '.join(empty)}. Add images (extensions "
            f"{', '.join(IMAGE_EXTENSIONS)}) or remove the folders."
        )
    return files, labels


def _split_folder(root: Path, split: str, present: dict[str, Path]) -> Path:
    order = {"train": ["train"], "test": ["test", "val"], "val": ["val", "test"]}.get(split)
    if order is None:
        raise DatasetNotFoundError(f"Unknown split {split!r}: use 'train', 'test' or 'val'.")
    for name in order:
        if name in present:
            return present[name]
    raise DatasetNotFoundError(f"{root} has no {' or '.join(n + '/' for n in order)} folder for split {split!r}.")


def _check_same_classes(folders: dict[str, Path]) -> None:
    """Every split must have the same class folders, or the labels of one split would mean other classes."""
    found = {name: set(_class_folders(path)) for name, path in folders.items()}
    names = sorted(found)
    for other in names[1:]:
        a, b = found[names[0]], found[other]
        if a != b:
            raise DatasetFormatError(
                f"Class folders differ between {names[0]}/ and {other}/ of {next(iter(folders.values())).parent}: "
                f"only in {names[0]}/: {sorted(a - b) or 'none'}; only in {other}/: {sorted(b - a) or 'none'}. "
                "Give every split the same class folders (an empty class is not allowed either)."
            )


def held_out(labels: list[int], split: str, fraction: float, seed: int) -> list[int]:
    """Indices of ``split`` in a seeded, per-class split of one folder: ``fraction`` of each class is the test part."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"split_fraction must be in (0, 1), got {fraction}")
    gen = torch.Generator().manual_seed(seed)
    by_class: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)
    chosen = []
    for label in sorted(by_class):
        idx = by_class[label]
        perm = torch.randperm(len(idx), generator=gen).tolist()
        n_test = round(fraction * len(idx))
        part = perm[:n_test] if split in ("test", "val") else perm[n_test:]
        chosen += [idx[j] for j in sorted(part)]
    return sorted(chosen)


def _present_splits(root: Path) -> dict[str, Path]:
    return {name: root / name for name in ("train", "test", "val") if (root / name).is_dir()}


def split_folder(root: Path, split: str) -> Path:
    """The folder whose class folders :func:`imagefolder_listing` lists for ``split``: ``train/``, ``test/`` or
    ``val/``, or the root itself for a tree of class folders only (split by a seeded fraction)."""
    present = _present_splits(root)
    return _split_folder(root, split, present) if present else root


def imagefolder_listing(root: Path, split: str, image_size: Optional[int], fraction: float, seed: int) -> Listing:
    present = _present_splits(root)
    header: dict[str, Any] = {"kind": "imagefolder", "split": split, "image_size": image_size}
    if present:
        folder = _split_folder(root, split, present)
        _check_same_classes(present)
        classes = _class_folders(folder)
        files, labels = _images_of(folder, classes)
    else:
        if split not in ("train", "test", "val"):
            raise DatasetNotFoundError(f"Unknown split {split!r}: use 'train', 'test' or 'val'.")
        classes = _class_folders(root)
        all_files, all_labels = _images_of(root, classes)
        keep = held_out(all_labels, split, fraction, seed)
        files, labels = [all_files[i] for i in keep], [all_labels[i] for i in keep]
        header.update(split_fraction=fraction, seed=seed)
    return Listing(files, labels, classes, fingerprint_files(header, root, files))
