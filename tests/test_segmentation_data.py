"""Segmentation layouts (generic, VOC 2012, ADE20K), their errors, and the CIFAR-10 mosaics."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sslzoo.data import DatasetFormatError, DatasetNotFoundError
from sslzoo.data.mosaic import build_mosaics, cifar10_mosaic
from sslzoo.data.seg_layouts import VOC_CLASSES, ade_label_map, open_segmentation
from tests.eval.dense_fixtures import quadrants, write_layout


def _masks(n: int, size: int = 16) -> list[np.ndarray]:
    return [quadrants(size, [(i + j) % 3 for j in range(4)]) for i in range(n)]


@pytest.mark.parametrize("nested", [False, True])
def test_generic_layout_pairs_images_and_masks(tmp_path: Path, nested: bool) -> None:
    masks = _masks(3)
    masks[1][0, 0] = 255
    write_layout(tmp_path, {"train": masks, "val": _masks(2)}, nested=nested)
    train = open_segmentation(tmp_path, "train")
    val = open_segmentation(tmp_path, "test")  # test means val
    assert len(train) == 3 and len(val) == 2 and train.classes == ["0", "1", "2"]
    image, mask = train[1]
    assert image.shape == (3, 16, 16) and image.dtype == torch.uint8
    assert np.array_equal(mask.numpy(), masks[1]) and torch.equal(train.mask(1), mask)
    assert train.fingerprint != val.fingerprint


def test_classes_txt_names_the_classes(tmp_path: Path) -> None:
    write_layout(tmp_path, {"train": _masks(1), "val": _masks(1)}, classes=["sky", "road", "car", "tree"])
    assert open_segmentation(tmp_path, "val").classes == ["sky", "road", "car", "tree"]


def _write_png(path: Path, array: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)


def test_ade20k_labels_are_shifted_as_mmsegmentation_does(tmp_path: Path) -> None:
    root = tmp_path / "ADEChallengeData2016"
    raw = np.array([[0, 1, 2], [150, 75, 0]], dtype=np.uint8)
    for sub in ("training", "validation"):
        _write_png(root / "images" / sub / "ADE_x_0001.jpg", np.zeros((2, 3, 3), np.uint8))
        _write_png(root / "annotations" / sub / "ADE_x_0001.png", raw)
    names = "\n".join(f"{i}\t0.1\t1\t1\tname{i};synonym" for i in range(1, 151))
    (root / "objectInfo150.txt").write_text("Idx\tRatio\tTrain\tVal\tName\n" + names + "\n")
    val = open_segmentation(tmp_path, "val")
    assert val.num_classes == 150 and val.classes[0] == "name1" and val.classes[149] == "name150"
    assert val.mask(0).tolist() == [[255, 0, 1], [149, 74, 255]]
    table = ade_label_map()
    assert table[0] == 255 and table[1] == 0 and table[150] == 149 and table[255] == 255


def test_voc2012_as_torchvision_lays_it_out(tmp_path: Path) -> None:
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    mask = np.array([[0, 15, 255], [20, 0, 0]], dtype=np.uint8)
    for i, split in enumerate(("train", "val")):
        _write_png(voc / "JPEGImages" / f"2007_00000{i}.jpg", np.zeros((2, 3, 3), np.uint8))
        m = Image.fromarray(mask, mode="P")
        m.putpalette([v for c in range(256) for v in (c, c, c)])
        (voc / "SegmentationClass").mkdir(parents=True, exist_ok=True)
        m.save(voc / "SegmentationClass" / f"2007_00000{i}.png")
        (voc / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
        (voc / "ImageSets" / "Segmentation" / f"{split}.txt").write_text(f"2007_00000{i}\n")
    val = open_segmentation(tmp_path / "VOCdevkit", "val")
    assert val.classes == VOC_CLASSES and len(val) == 1
    assert val.mask(0).tolist() == mask.tolist()  # palette indices are the classes; 255 stays ignored


@pytest.mark.parametrize("breakage, message", [
    ("size", "is 8x8 but its image 000.png is 16x16; a mask must have its image's size"),
    ("values", "has values 7 outside the 4 classes 0-3 (255 = ignore)"),
    ("unpaired", "000.png has no mask"),
    ("orphan", "has no image of stem '009'"),
    ("empty", "has no images"),
    ("rgb", "is a RGB image; masks must be single-channel PNG index maps"),
])
def test_bad_layouts_are_named_in_one_line(tmp_path: Path, breakage: str, message: str) -> None:
    write_layout(tmp_path, {"train": _masks(2), "val": _masks(2)}, classes=["a", "b", "c", "d"])
    mask = tmp_path / "masks" / "train" / "000.png"
    if breakage == "size":
        _write_png(mask, np.zeros((8, 8), np.uint8))
    elif breakage == "values":
        _write_png(mask, np.full((16, 16), 7, np.uint8))
    elif breakage == "unpaired":
        mask.unlink()
    elif breakage == "orphan":
        _write_png(tmp_path / "masks" / "train" / "009.png", np.zeros((16, 16), np.uint8))
    elif breakage == "empty":
        for p in (tmp_path / "images" / "train").iterdir():
            p.unlink()
        for p in (tmp_path / "masks" / "train").iterdir():
            p.unlink()
    elif breakage == "rgb":
        _write_png(mask, np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(DatasetFormatError, match=re.escape(message)) as info:
        train = open_segmentation(tmp_path, "train")
        train.mask(0)
    assert "\n" not in str(info.value)


def test_a_missing_folder_says_what_layouts_exist(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="cifar10-mosaic"):
        open_segmentation(tmp_path / "nope", "train")


def test_mosaic_labels_match_their_tiles_and_boundaries_leave_the_patch_grid() -> None:
    # source image j is flat grey j (unique), labelled j % 10: every mosaic pixel shows which image covers it
    n = 200
    sources = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 32, 32).contiguous()
    labels = np.arange(n) % 10
    images, masks = build_mosaics(labels, lambda idx: sources[torch.from_numpy(idx)], count=20, size=96,
                                  grids=(2, 3), rng=np.random.default_rng(0))
    assert images.shape == (20, 3, 96, 96) and masks.shape == (20, 96, 96)
    assert torch.equal(masks.long(), images[:, 0].long() % 10)
    shown = [set(images[m, 0].unique().tolist()) for m in range(20)]
    assert {len(s) for s in shown} == {4, 9}  # 2x2 and 3x3 mosaics, each source image once
    assert len(set().union(*shown)) == sum(map(len, shown))  # no source image twice in a split
    rows = (masks[:, 1:, :] != masks[:, :-1, :]).any(dim=2)  # where a horizontal boundary lies
    cuts = rows.nonzero()[:, 1] + 1
    assert (cuts % 8 != 0).any() and (cuts % 16 != 0).any()


def test_cifar10_mosaic_is_deterministic_by_seed(cifar10_root: Path) -> None:
    a = cifar10_mosaic("val", source=str(cifar10_root), count=12, seed=3)
    b = open_segmentation(f"cifar10-mosaic:{cifar10_root}", "val", count=12, seed=3)
    c = cifar10_mosaic("val", source=str(cifar10_root), count=12, seed=4)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks) and a.fingerprint == b.fingerprint
    assert not torch.equal(a.images, c.images) and a.fingerprint != c.fingerprint
    assert a.classes[:2] == ["airplane", "automobile"] and len(a.classes) == 10
    assert a.images.shape == (12, 3, 96, 96)
