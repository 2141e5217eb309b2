"""The CIFAR-10/100 python pickles and the STL-10 binaries, read straight into a :class:`DecodedSplit`."""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch

from .decode import NAMED_DATASETS, DatasetFormatError, DatasetNotFoundError, DecodedSplit, fingerprint_files

STL10_CLASSES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Reads pickles of dicts, lists and numpy arrays, and refuses every other global.

    A pickle can name any callable and have it called while loading, so ``pickle.load`` on a downloaded file could run
    anything. The CIFAR pickles only need numpy's array reconstruction, which builds arrays and runs no other code.
    """

    _ALLOWED = {
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 writes bytes in protocol-2 pickles
    }

    def __init__(self, file: io.BufferedIOBase, name: str) -> None:
        super().__init__(file, encoding="bytes")  # the official files were written by Python 2
        self.name = name

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("numpy.core"):  # numpy 1.x names, as in the official files
            module = "numpy._core" + module[len("numpy.core"):]
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise DatasetFormatError(
            f"{self.name} is not a plain CIFAR pickle: it asks to run {module}.{name}, which sslzoo refuses. "
            "Download the dataset again from its official source."
        )


def _load_pickle(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DatasetNotFoundError(f"Missing file {path}; the folder should be extracted from the official archive.")
    with open(path, "rb") as f:
        try:
            obj = _NumpyOnlyUnpickler(f, str(path)).load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
            if isinstance(e, DatasetFormatError):
                raise
            raise DatasetFormatError(f"Cannot read {path}: {e}. Download the dataset again.") from e
    if not isinstance(obj, dict):
        raise DatasetFormatError(f"{path} holds a {type(obj).__name__}, expected the dict of a CIFAR batch.")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _names(values: Sequence[Union[str, bytes]]) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def train_or_test(split: str) -> str:
    if split not in ("train", "test", "val"):
        raise DatasetNotFoundError(f"Unknown split {split!r}: use 'train' or 'test'.")
    return "train" if split == "train" else "test"


def cifar_split(folder: Path, split: str, hundred: bool) -> DecodedSplit:
    split = train_or_test(split)
    if hundred:
        files, meta_file, names_key, label_key = [split], "meta", "fine_label_names", "fine_labels"
    else:
        files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        meta_file, names_key, label_key = "batches.meta", "label_names", "labels"
    classes = _names(_load_pickle(folder / meta_file)[names_key])
    batches = [_load_pickle(folder / f) for f in files]
    try:
        images = np.concatenate([np.asarray(b["data"], dtype=np.uint8).reshape(-1, 3, 32, 32) for b in batches])
        labels = np.concatenate([np.asarray(b[label_key], dtype=np.int64) for b in batches])
    except (KeyError, ValueError) as e:
        raise DatasetFormatError(f"Unexpected layout of the CIFAR batches in {folder}: {e}") from e
    header = {"kind": "cifar100" if hundred else "cifar10", "split": split}
    fp = fingerprint_files(header, folder, [folder / f for f in [meta_file, *files]])
    return DecodedSplit(torch.from_numpy(images), torch.from_numpy(labels), classes, fp)


def stl10_split(folder: Path, split: str) -> DecodedSplit:
    if split != "unlabeled":
        split = train_or_test(split)
    x_file = folder / f"{split}_X.bin"
    y_file = folder / f"{split}_y.bin" if split != "unlabeled" else None
    for f in (x_file, y_file):
        if f is not None and not f.is_file():
            raise DatasetNotFoundError(f"Missing file {f}; the folder should be extracted from stl10_binary.tar.gz.")
    raw = np.fromfile(x_file, dtype=np.uint8)
    if raw.size % (3 * 96 * 96):
        raise DatasetFormatError(f"{x_file} has {raw.size} bytes, not a whole number of 3x96x96 images.")
    images = raw.reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2)  # the files store each plane column-major
    labels = np.fromfile(y_file, dtype=np.uint8).astype(np.int64) - 1 if y_file else np.full(len(images), -1)
    if len(labels) != len(images):
        raise DatasetFormatError(f"{x_file} has {len(images)} images but {y_file} has {len(labels)} labels.")
    names_file = folder / "class_names.txt"
    classes = names_file.read_text().split() if names_file.is_file() else list(STL10_CLASSES)
    fp = fingerprint_files({"kind": "stl10", "split": split}, folder, [f for f in (x_file, y_file) if f is not None])
    return DecodedSplit(torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels), classes, fp)


def binary_format(root: Path) -> Optional[tuple[str, Path]]:
    """``(kind, folder)`` when ``root`` is, or directly holds, a CIFAR pickle or STL-10 binary folder."""
    for folder in (root, *(root / sub for sub, _, _ in NAMED_DATASETS.values())):
        if (folder / "data_batch_1").is_file() or (folder / "test_batch").is_file():
            return "cifar10", folder
        if (folder / "meta").is_file() and ((folder / "train").is_file() or (folder / "test").is_file()):
            return "cifar100", folder
        if (folder / "train_X.bin").is_file() or (folder / "test_X.bin").is_file():
            return "stl10", folder
    return None
