"""Session fixtures shared by the test suite: the real CIFAR-10 (JPEG q75) copy and a tiny ViT."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import timm
import torch

SHARED_TARBALL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-jpg.tar.gz"
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


@pytest.fixture(scope="session")
def cifar10_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The extracted CIFAR-10 (JPEG q75) tree (``train/``, ``test/``), extracted once per test session.

    ``$SSLZOO_TEST_DATA`` may name an already extracted tree to reuse.
    """
    env = os.environ.get("SSLZOO_TEST_DATA")
    if env:
        root = Path(env).expanduser()
        if not (root / "train").is_dir() or not (root / "test").is_dir():
            pytest.fail(f"SSLZOO_TEST_DATA={env} must be an extracted cifar10-jpg folder with train/ and test/")
        return root
    if not SHARED_TARBALL.is_file():
        pytest.skip(f"real CIFAR-10 data not available: {SHARED_TARBALL} is missing (or set SSLZOO_TEST_DATA)")
    out = tmp_path_factory.mktemp("cifar10")
    if shutil.which("tar"):  # about 4x faster than tarfile on the 60,000 small files
        subprocess.run(["tar", "xzf", str(SHARED_TARBALL), "-C", str(out)], check=True)
    else:
        with tarfile.open(SHARED_TARBALL, "r:gz") as tar:
            tar.extractall(out, filter="data")
    return out / "cifar10-jpg"


def make_tiny_vit(depth: int = 4, *, img_size: int = 32, patch_size: int = 4, seed: int = 0) -> torch.nn.Module:
    """A randomly initialised 64-wide ViT with a CIFAR ``pretrained_cfg`` (32 px, crop_pct 1, CIFAR mean/std)."""
    torch.manual_seed(seed)
    model = timm.create_model(
        "vit_tiny_patch16_224",
        img_size=img_size,
        patch_size=patch_size,
        embed_dim=64,
        depth=depth,
        num_heads=2,
        num_classes=0,
    )
    model.pretrained_cfg = dict(
        model.pretrained_cfg,
        input_size=(3, img_size, img_size),
        crop_pct=1.0,
        crop_mode="center",
        interpolation="bicubic",
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
    )
    return model.eval()


@pytest.fixture
def tiny_vit() -> torch.nn.Module:
    """A fresh 64-wide, 4-block ViT/4 at 32 px (seeded)."""
    return make_tiny_vit()


@pytest.fixture
def tiny_vit_factory():
    """``make_tiny_vit(depth=4, *, img_size=32, patch_size=4, seed=0)``, for tests that need several models."""
    return make_tiny_vit


@pytest.fixture
def isolated_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test that uses it sees the user's caches, the shipped hub or the network; returns the temporary root."""
    from sslzoo.weights import local_hubs

    monkeypatch.setenv("SSLZOO_HUB", str(tmp_path / "env_hub"))
    monkeypatch.setenv("SSLZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(local_hubs, "SHIPPED_HUB", tmp_path / "shipped_hub")
    return tmp_path
