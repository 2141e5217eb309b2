"""Fixtures of the training tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def small_cifar(cifar10_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(ImageFolder root with 8 train and 4 test images per class of the real CIFAR-10, a decode cache dir)."""
    root = tmp_path_factory.mktemp("small_cifar")
    for split, per_class in (("train", 8), ("test", 4)):
        for cls in sorted(p.name for p in (cifar10_root / split).iterdir()):
            dst = root / split / cls
            dst.mkdir(parents=True)
            for f in sorted((cifar10_root / split / cls).iterdir())[:per_class]:
                shutil.copy(f, dst / f.name)
    return root, tmp_path_factory.mktemp("decode_cache")
