"""Fixtures of the training tests."""

from __future__ import annotations

import random
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


def upscaled_copy(src: Path, dst: Path, low: int, high: int, *, per_class: int | None = None, seed: int = 0) -> Path:
    """The JPEG tree ``src`` (train/ and test/) with every image resized to a random size of ``low``-``high`` px a
    side (at most ``per_class`` images per class): a folder of mixed-size JPEGs, as ImageNet is."""
    from PIL import Image

    rng = random.Random(seed)
    for split in ("train", "test"):
        for cls in sorted(p for p in (src / split).iterdir() if p.is_dir()):
            for path in sorted(cls.glob("*.jpg"))[:per_class]:
                out = dst / split / cls.name / path.name
                out.parent.mkdir(parents=True, exist_ok=True)
                with Image.open(path) as im:
                    im.convert("RGB").resize((rng.randint(low, high), rng.randint(low, high)), Image.BICUBIC).save(
                        out, quality=90)
    return dst
