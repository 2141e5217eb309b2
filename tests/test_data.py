"""sslzoo.data: decoding, caching, formats, errors, the eval transform and the embedded sample."""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import shutil
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from timm.data import create_transform, resolve_model_data_config

from sslzoo import data
from sslzoo.data import DatasetFormatError, DatasetNotFoundError, MixedImageSizesError, decoded_split
from sslzoo.eval.features import extract_features

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(scope="module")
def cifar_subset(cifar10_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small ImageFolder of real CIFAR-10 (JPEG q75) files: 20 train and 5 test images per class."""
    out = tmp_path_factory.mktemp("cifar_subset")
    for split, n in (("train", 20), ("test", 5)):
        for cls in CIFAR10_CLASSES:
            (out / split / cls).mkdir(parents=True)
            for f in sorted((cifar10_root / split / cls).iterdir())[:n]:
                shutil.copy2(f, out / split / cls / f.name)
    return out


@pytest.fixture
def count_opens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every PIL.Image.open made by sslzoo.data."""
    opened: list[str] = []
    real_open = Image.open

    def counting_open(fp, *args, **kwargs):
        opened.append(str(fp))
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(data.Image, "open", counting_open)
    return opened


def write_image(path: Path, mode: str, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Write a random image in ``mode``; returns what PIL's RGB conversion of it gives."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    channels = {"L": 1, "RGB": 3, "RGBA": 4}.get(mode, 1)
    arr = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    img = Image.fromarray(arr.squeeze(-1) if channels == 1 else arr, mode="L" if mode == "P" else mode)
    if mode == "P":
        img = img.convert("RGB").convert("P", palette=Image.ADAPTIVE, colors=16)
    img.save(path)
    return np.array(Image.open(path).convert("RGB"))


def make_tree(root: Path, layout: dict[str, int], size: tuple[int, int] = (8, 8)) -> Path:
    """An ImageFolder tree of PNGs: ``{"train/a": 3, ...}`` -> 3 images in ``root/train/a``."""
    for i, (folder, n) in enumerate(layout.items()):
        for j in range(n):
            write_image(root / folder / f"{j:03d}.png", "RGB", size, seed=100 * i + j)
    return root


# ------------------------------------------------------------------------------------------------ ImageFolder


def test_imagefolder_decodes_real_cifar_images(cifar_subset: Path, tmp_path: Path) -> None:
    train = decoded_split(cifar_subset, "train", cache_dir=tmp_path)
    assert train.images.shape == (200, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.classes == CIFAR10_CLASSES
    assert train.labels.dtype == torch.int64 and train.labels.bincount().tolist() == [20] * 10
    first_dog = sorted((cifar_subset / "train" / "dog").iterdir())[0]
    expected = np.array(Image.open(first_dog).convert("RGB"))
    index = CIFAR10_CLASSES.index("dog") * 20
    assert torch.equal(train.images[index].permute(1, 2, 0), torch.from_numpy(expected))
    test = decoded_split(cifar_subset, "test", cache_dir=tmp_path)
    assert len(test) == 50 and test.fingerprint != train.fingerprint


def test_second_call_reads_the_cache_without_decoding(cifar_subset: Path, tmp_path: Path, count_opens) -> None:
    first = decoded_split(cifar_subset, "test", cache_dir=tmp_path)
    assert len(count_opens) == 50
    cache_files = list((tmp_path / "decoded").glob("*.safetensors"))
    assert cache_files == [tmp_path / "decoded" / f"{first.fingerprint}.safetensors"]
    count_opens.clear()
    second = decoded_split(cifar_subset, "test", cache_dir=tmp_path)
    assert count_opens == []
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    assert second.classes == first.classes and second.fingerprint == first.fingerprint


def test_cache_location_follows_sslzoo_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_tree(tmp_path / "ds", {"train/a": 2, "train/b": 2, "test/a": 1, "test/b": 1})
    monkeypatch.setenv("SSLZOO_CACHE", str(tmp_path / "cache"))
    split = decoded_split(root, "train")
    assert (tmp_path / "cache" / "decoded" / f"{split.fingerprint}.safetensors").is_file()


def test_changed_file_changes_the_fingerprint(tmp_path: Path, count_opens) -> None:
    root = make_tree(tmp_path / "ds", {"train/a": 2, "train/b": 2})
    before = decoded_split(root, "train", cache_dir=tmp_path / "cache")
    target = root / "train" / "a" / "000.png"
    new_pixels = write_image(target, "RGB", (8, 8), seed=999)
    os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 10**9))
    count_opens.clear()
    after = decoded_split(root, "train", cache_dir=tmp_path / "cache")
    assert after.fingerprint != before.fingerprint and len(count_opens) == 4
    assert torch.equal(after.images[0].permute(1, 2, 0), torch.from_numpy(new_pixels))


def test_grayscale_rgba_and_palette_images_become_rgb(tmp_path: Path) -> None:
    expected = {
        mode: write_image(tmp_path / "ds" / "train" / f"c_{mode}" / "x.png", mode, (6, 5), seed=i)
        for i, mode in enumerate(["L", "RGBA", "P"])
    }
    split = decoded_split(tmp_path / "ds", "train", cache_dir=tmp_path / "cache")
    assert split.classes == ["c_L", "c_P", "c_RGBA"] and split.images.shape == (3, 3, 5, 6)
    gray = split.images[0]
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    for i, mode in enumerate(split.classes):
        assert torch.equal(split.images[i].permute(1, 2, 0), torch.from_numpy(expected[mode[2:]]))


def test_test_split_falls_back_to_val(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "ds", {"train/a": 2, "train/b": 2, "val/a": 1, "val/b": 1})
    assert len(decoded_split(root, "test", cache_dir=tmp_path / "cache")) == 2
    assert len(decoded_split(root, "val", cache_dir=tmp_path / "cache")) == 2


def test_single_folder_is_split_deterministically(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "ds", {"a": 10, "b": 20})
    cache = tmp_path / "cache"
    train = decoded_split(root, "train", cache_dir=cache, split_fraction=0.2)
    test = decoded_split(root, "test", cache_dir=cache, split_fraction=0.2)
    assert test.labels.bincount().tolist() == [2, 4] and train.labels.bincount().tolist() == [8, 16]
    train_px = {bytes(im.numpy()) for im in train.images}
    assert not train_px & {bytes(im.numpy()) for im in test.images}
    again = decoded_split(root, "test", cache_dir=tmp_path / "other", split_fraction=0.2)
    assert torch.equal(again.images, test.images)
    other_seed = decoded_split(root, "test", cache_dir=cache, split_fraction=0.2, seed=1)
    assert other_seed.fingerprint != test.fingerprint and not torch.equal(other_seed.images, test.images)


@settings(max_examples=30, deadline=None)
@given(
    labels=st.lists(st.integers(0, 4), min_size=1, max_size=60),
    fraction=st.floats(0.05, 0.95),
    seed=st.integers(0, 2**31),
)
def test_held_out_split_partitions_each_class(labels: list[int], fraction: float, seed: int) -> None:
    train = data.folders.held_out(labels, "train", fraction, seed)
    test = data.folders.held_out(labels, "test", fraction, seed)
    assert sorted(train + test) == list(range(len(labels)))
    for c in set(labels):
        assert sum(labels[i] == c for i in test) == round(fraction * labels.count(c))
    assert data.folders.held_out(labels, "test", fraction, seed) == test


# ------------------------------------------------------------------------------------------------ sizes


def test_mixed_sizes_need_image_size_or_per_image_decoding(tmp_path: Path, tiny_vit) -> None:
    root = tmp_path / "ds"
    write_image(root / "train" / "a" / "0.png", "RGB", (32, 32))
    write_image(root / "train" / "a" / "1.png", "RGB", (40, 30))
    write_image(root / "train" / "b" / "0.png", "RGB", (17, 50))
    with pytest.raises(MixedImageSizesError, match=r"image_size=N") as err:
        decoded_split(root, "train", cache_dir=tmp_path / "cache")
    assert "40x30" in str(err.value)
    resized = decoded_split(root, "train", cache_dir=tmp_path / "cache", image_size=24)
    assert resized.images.shape == (3, 3, 24, 24)
    ds = data.open_dataset(root, "train", cache_dir=tmp_path / "cache")
    assert isinstance(ds, data.ImageFileDataset) and ds[1][0].shape == (3, 30, 40)
    feats, labels = extract_features(tiny_vit, ds, batch_size=2, progress=False)
    assert feats.shape == (3, 64) and labels.tolist() == [0, 0, 1]
    one, _ = extract_features(tiny_vit, torch.utils.data.Subset(ds, [1]), progress=False)
    assert torch.allclose(one[0], feats[1], atol=1e-5)  # alone or batched with other sizes: the same transform


def test_eval_transform_resizes_odd_sizes_to_the_model_input(tiny_vit_factory) -> None:
    for size, patch in ((32, 4), (48, 8)):
        tf = data.eval_transform(tiny_vit_factory(depth=1, img_size=size, patch_size=patch))
        for hw in ((30, 40), (17, 50), (size, size), (300, 200)):
            assert tf(torch.zeros(3, *hw, dtype=torch.uint8)).shape == (3, size, size)
        assert tf(torch.zeros(5, 3, 20, 70, dtype=torch.uint8)).shape == (5, 3, size, size)


def test_eval_transform_matches_timm_on_pil_images(cifar_subset: Path, tiny_vit_factory) -> None:
    """Same geometry as timm's own eval transform; resizing uint8 tensors rather than PIL images differs by at most
    2 intensity levels, rarely."""
    files = [sorted((cifar_subset / "test" / c).iterdir())[0] for c in CIFAR10_CLASSES[:4]]
    models = [tiny_vit_factory(depth=1), tiny_vit_factory(depth=1, img_size=224, patch_size=16)]
    imagenet = dict(crop_pct=0.875, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    models[1].pretrained_cfg = dict(models[1].pretrained_cfg, **imagenet)
    for model in models:
        ours, timms = data.eval_transform(model), create_transform(**resolve_model_data_config(model))
        for f, size in zip(files, [(32, 32), (40, 30), (64, 64), (300, 200)]):
            img = Image.open(f).convert("RGB").resize(size, Image.BILINEAR)
            a, b = ours(img), timms(img)
            assert a.shape == b.shape
            if size == (32, 32) and a.shape[-1] == 32:
                torch.testing.assert_close(a, b, atol=1e-5, rtol=0)  # no resize: identical
            two_levels = 2 / 255 / min(model.pretrained_cfg["std"])
            assert (a - b).abs().max() <= two_levels + 1e-5 and (a - b).abs().mean() < 1e-3


# ------------------------------------------------------------------------------------------------ errors


def test_missing_root_says_what_is_expected(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="does not exist.*ImageFolder"):
        decoded_split(tmp_path / "nope", "train")


def test_a_file_given_as_the_dataset_is_called_a_file(tmp_path: Path, capsys) -> None:
    from sslzoo import cli

    image = tmp_path / "cat.jpg"
    image.write_bytes(b"not a folder")
    with pytest.raises(DatasetNotFoundError, match=r"cat\.jpg is a file, not a dataset folder\. Expected an ImageFolder"):
        decoded_split(image, "train")
    assert cli.main(["knn", "--model", "dino_vit_tiny_patch4_32", "--random-init", "--data", str(image)]) == 2
    assert "is a file, not a dataset folder" in capsys.readouterr().err


def test_empty_folders_are_named(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetFormatError, match="no class folders"):
        decoded_split(tmp_path / "empty", "train", cache_dir=tmp_path)
    root = make_tree(tmp_path / "ds", {"train/a": 1, "test/a": 1})
    (root / "train" / "b").mkdir()
    (root / "test" / "b").mkdir()
    (root / "test" / "b" / "notes.txt").write_text("not an image")
    with pytest.raises(DatasetFormatError, match=r"without images in .*train: b\. "):
        decoded_split(root, "train", cache_dir=tmp_path)


def test_corrupt_image_is_named(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "ds", {"train/a": 2})
    bad = root / "train" / "a" / "001.png"
    bad.write_bytes(bad.read_bytes()[:40])
    with pytest.raises(DatasetFormatError, match=re.escape(str(bad))):
        decoded_split(root, "train", cache_dir=tmp_path)


def test_every_corrupt_image_is_named_in_one_pass_up_to_a_limit(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "ds", {"train/a": 30, "train/b": 3})
    few = [root / "train" / "a" / "000.png", root / "train" / "b" / "002.png"]  # the first file too
    for bad in few:
        bad.write_bytes(bad.read_bytes()[:40])
    with pytest.raises(data.UnreadableImagesError) as err:
        decoded_split(root, "train", cache_dir=tmp_path)
    message = str(err.value)
    assert message.startswith("2 of 33 images cannot be read: ") and all(str(bad) in message for bad in few)
    assert len(message.splitlines()) == 1 and [b[0] for b in err.value.bad] == [0, 32]
    many = sorted((root / "train" / "a").glob("*.png"))[1:24]
    for bad in many:
        bad.write_bytes(b"not an image")
    with pytest.raises(DatasetFormatError) as err:
        decoded_split(root, "train", cache_dir=tmp_path)
    message = str(err.value)
    named = [bad for bad in [few[0], *many, few[1]] if str(bad) in message]
    assert message.startswith("25 of 33 images cannot be read: ") and "; and 5 more." in message
    assert len(named) == 20 and named == [few[0], *many][:20]


def test_class_folders_that_differ_between_splits_are_named(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "ds", {"train/cat": 1, "train/dog": 1, "test/cat": 1, "test/emu": 1})
    for split in ("train", "test"):
        with pytest.raises(DatasetFormatError, match=r"only in test/: \['emu'\]") as err:
            decoded_split(root, split, cache_dir=tmp_path)
        assert "only in train/: ['dog']" in str(err.value)


def test_unknown_split(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "ds", {"train/a": 1})
    with pytest.raises(DatasetNotFoundError, match="Unknown split 'holdout'"):
        decoded_split(root, "holdout", cache_dir=tmp_path)
    with pytest.raises(DatasetNotFoundError, match="no test/ or val/ folder"):
        decoded_split(root, "test", cache_dir=tmp_path)


# ------------------------------------------------------------------------------------------------ binary formats


def fake_cifar(root: Path, hundred: bool, n_per_batch: int = 6, protocol: int = 2) -> dict[str, np.ndarray]:
    """A cifar-10-batches-py / cifar-100-python folder in torchvision's layout (bytes keys, as Python 2 wrote them)."""
    rng = np.random.default_rng(1)
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True)
    names = [f"class{i}".encode() for i in range(100 if hundred else 10)]
    files = ["train", "test"] if hundred else [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    label_key = b"fine_labels" if hundred else b"labels"
    written = {}
    for f in files:
        pixels = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, len(names), n_per_batch).tolist()
        batch = {b"data": pixels, label_key: labels, b"batch_label": f.encode(), b"filenames": [b"x.png"] * n_per_batch}
        if hundred:
            batch[b"coarse_labels"] = [0] * n_per_batch
        (folder / f).write_bytes(pickle.dumps(batch, protocol=protocol))
        written[f] = (pixels, labels)
    meta = {b"fine_label_names": names, b"coarse_label_names": [b"c"]} if hundred else {b"label_names": names}
    (folder / ("meta" if hundred else "batches.meta")).write_bytes(pickle.dumps(meta, protocol=protocol))
    return written


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar10_pickles(tmp_path: Path, protocol: int) -> None:
    written = fake_cifar(tmp_path, hundred=False, protocol=protocol)
    train = decoded_split(tmp_path, "train")  # the folder holding cifar-10-batches-py, as torchvision's root
    pixels = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
    assert torch.equal(train.images, torch.from_numpy(pixels.reshape(-1, 3, 32, 32)))
    assert train.labels.tolist() == sum((written[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert train.classes == [f"class{i}" for i in range(10)]
    test = decoded_split(tmp_path / "cifar-10-batches-py", "test")
    assert test.labels.tolist() == written["test_batch"][1] and test.fingerprint != train.fingerprint


def test_cifar100_pickles_use_fine_labels(tmp_path: Path) -> None:
    written = fake_cifar(tmp_path, hundred=True)
    test = decoded_split(tmp_path, "test")
    assert test.labels.tolist() == written["test"][1] and len(test.classes) == 100
    assert torch.equal(test.images[2], torch.from_numpy(written["test"][0][2].reshape(3, 32, 32)))


def test_pickle_that_runs_code_is_refused(tmp_path: Path) -> None:
    fake_cifar(tmp_path, hundred=False)
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps({b"data": Exploit()}, protocol=2))
    with pytest.raises(DatasetFormatError, match=r"refuses"):
        decoded_split(tmp_path, "test")
    assert not marker.exists()


def test_stl10_binary_is_column_major(tmp_path: Path) -> None:
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (4, 3, 96, 96), dtype=np.uint8)
    images.transpose(0, 1, 3, 2).tofile(folder / "test_X.bin")  # how the STL-10 files store each plane
    np.array([1, 10, 3, 3], dtype=np.uint8).tofile(folder / "test_y.bin")
    split = decoded_split(tmp_path, "test")
    assert torch.equal(split.images, torch.from_numpy(images))
    assert split.labels.tolist() == [0, 9, 2, 2] and split.classes == data.STL10_CLASSES
    with pytest.raises(DatasetNotFoundError, match="train_X.bin"):
        decoded_split(tmp_path, "train")


def test_named_dataset_offline_says_where_to_put_the_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setenv("SSLZOO_CACHE", str(tmp_path))
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", no_network)
    with pytest.raises(DatasetNotFoundError, match=re.escape(str(tmp_path / "datasets" / "cifar-10-batches-py"))):
        decoded_split("cifar10", "train")
    fake_cifar(tmp_path / "datasets", hundred=False)  # once the files are there, no download is tried
    assert len(data.open_dataset("cifar10", "test")) == 6


# ------------------------------------------------------------------------------------------------ sample, datasets


def readme_sha256(name: str) -> str:
    readme = (data.SAMPLE_ARCHIVE.parent / "README.md").read_text()
    return re.search(rf"\| `{re.escape(name)}` \| `([0-9a-f]{{64}})` \|", readme).group(1)


def test_embedded_sample_matches_its_readme_and_is_balanced() -> None:
    folder = data.SAMPLE_ARCHIVE.parent
    for name in ("cifar10_sample.zip", "MANIFEST.sha256"):
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == readme_sha256(name)
    manifest = dict(line.split("  ")[::-1] for line in (folder / "MANIFEST.sha256").read_text().splitlines())
    with zipfile.ZipFile(data.SAMPLE_ARCHIVE) as zf:
        assert sorted(zf.namelist()) == sorted(manifest)
        assert all(hashlib.sha256(zf.read(n)).hexdigest() == h for n, h in manifest.items())
    for split, per_class in (("train", 50), ("test", 10)):
        s = data.embedded_sample(split)
        assert s.classes == CIFAR10_CLASSES and s.images.shape == (10 * per_class, 3, 32, 32)
        assert s.labels.bincount().tolist() == [per_class] * 10


def test_embedded_sample_decodes_to_the_shared_images(cifar10_root: Path) -> None:
    sample = data.embedded_sample("test")
    with zipfile.ZipFile(data.SAMPLE_ARCHIVE) as zf:
        names = sorted(n for n in zf.namelist() if n.startswith("test/"))
    for i in (0, 37, 99):
        expected = np.array(Image.open(cifar10_root / names[i]).convert("RGB"))
        assert torch.equal(sample.images[i].permute(1, 2, 0), torch.from_numpy(expected))
        assert sample.classes[int(sample.labels[i])] == names[i].split("/")[1]


def test_open_dataset_applies_the_transform_to_uint8_images() -> None:
    raw = data.open_dataset("sample", "test")
    img, label = raw[13]
    assert img.dtype == torch.uint8 and img.shape == (3, 32, 32) and label == 1
    seen = []
    ds = data.open_dataset("sample", "test", transform=lambda x: seen.append(x.dtype) or x.float() / 255)
    assert torch.equal(ds[13][0], img.float() / 255) and seen == [torch.uint8]
    assert ds.fingerprint == raw.fingerprint != data.open_dataset("sample", "train").fingerprint


def test_open_dataset_names_the_accepted_specs(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="sample, cifar10, cifar100, stl10"):
        data.open_dataset(tmp_path / "missing", "train")
