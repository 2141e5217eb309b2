"""The segmentation layouts on disk: the generic folders, Pascal VOC 2012, ADE20K; and ``open_segmentation``.

- Generic: ``images/`` and ``masks/`` with the same file stems, masks single-channel PNG index maps (255 = ignore),
  split into ``train/`` and ``val/`` (``ROOT/images/train`` + ``ROOT/masks/train``, or ``ROOT/train/images`` +
  ``ROOT/train/masks``); an optional ``classes.txt`` (one name per line, in value order). Without it the classes are
  ``0 .. max`` over the masks of every split (which are then all read once, to find the maximum).
- Pascal VOC 2012 as torchvision's ``VOCSegmentation`` lays it out: ``VOCdevkit/VOC2012/{JPEGImages,
  SegmentationClass, ImageSets/Segmentation/{train,val}.txt}``; 21 classes, 255 = the objects' borders (ignored).
- ADE20K (SceneParsing ``ADEChallengeData2016``): ``images/{training,validation}/*.jpg`` and
  ``annotations/{training,validation}/*.png`` with labels 1-150 and 0 = "other"; as mmsegmentation's
  ``reduce_zero_label``, 0 becomes 255 (ignored) and every other label drops by one, so the classes are 0-149.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from .. import files
from .decode import IMAGE_EXTENSIONS, DatasetFormatError, DatasetNotFoundError, PathLike, fingerprint_files
from .mosaic import MOSAIC, cifar10_mosaic
from .segmentation import IGNORE_INDEX, SegmentationDataset, SegmentationFiles

VOC_CLASSES = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor"]
ADE_CLASSES = 150
VOC_NAME = "voc2012"
LAYOUTS_HINT = ("cifar10-mosaic[:CIFAR10_PATH], voc2012, a VOCdevkit or ADEChallengeData2016 folder, or a folder with"
                " images/{train,val}/ and masks/{train,val}/ (or {train,val}/images/ and {train,val}/masks/)")


def _split_name(split: str) -> str:
    if split not in ("train", "val", "test"):
        raise DatasetNotFoundError(f"Unknown split {split!r}: use 'train' or 'val'.")
    return "val" if split == "test" else split


def ade_label_map() -> np.ndarray:
    """The 256-entry table of mmsegmentation's ``reduce_zero_label``: 0 -> 255, v -> v - 1, 255 stays 255."""
    table = (np.arange(256, dtype=np.int64) - 1) % 256
    table[0] = IGNORE_INDEX
    table[IGNORE_INDEX] = IGNORE_INDEX
    return table.astype(np.uint8)


def _fingerprint(kind: str, split: str, root: Path, pairs: list[tuple[Path, Path]]) -> str:
    return fingerprint_files({"kind": f"segmentation:{kind}", "split": split}, root,
                             [p for pair in pairs for p in pair])


def _generic_folders(root: Path, split: str) -> Optional[tuple[Path, Path]]:
    for images, masks in ((root / "images" / split, root / "masks" / split),
                          (root / split / "images", root / split / "masks")):
        if images.is_dir() or masks.is_dir():
            return images, masks
    return None


def _stems(folder: Path, extensions: tuple[str, ...]) -> dict[str, Path]:
    if not folder.is_dir():
        raise DatasetNotFoundError(f"{folder} does not exist: the generic layout needs images/ and masks/ per split.")
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in extensions}


def _pair_up(images: Path, masks: Path) -> list[tuple[Path, Path]]:
    image_files, mask_files = _stems(images, IMAGE_EXTENSIONS), _stems(masks, (".png",))
    missing = sorted(set(image_files) - set(mask_files))
    if missing:
        raise DatasetFormatError(f"Image {image_files[missing[0]]} has no mask {masks / (missing[0] + '.png')}"
                                 f" ({len(missing)} image(s) without a mask); every image needs a mask of its stem.")
    orphans = sorted(set(mask_files) - set(image_files))
    if orphans:
        raise DatasetFormatError(f"Mask {mask_files[orphans[0]]} has no image of stem {orphans[0]!r} in {images}"
                                 f" ({len(orphans)} mask(s) without an image); remove them or add the images.")
    if not image_files:
        raise DatasetFormatError(f"The split folder {images} has no images: add images and masks, or use another"
                                 " split.")
    return [(image_files[s], mask_files[s]) for s in sorted(image_files)]


def _max_value(pairs: list[tuple[Path, Path]]) -> int:
    top = -1
    for _, mask in pairs:
        with Image.open(mask) as im:
            values = np.unique(np.array(im))
        values = values[values != IGNORE_INDEX]
        if values.size:
            top = max(top, int(values.max()))
    return top


def _generic(root: Path, split: str) -> SegmentationDataset:
    folders = _generic_folders(root, split)
    if folders is None:
        raise DatasetNotFoundError(f"{root} has no {split} split: expected {LAYOUTS_HINT}.")
    pairs = _pair_up(*folders)
    listed = root / "classes.txt"
    if listed.is_file():
        classes = [line.strip() for line in listed.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not classes:
            raise DatasetFormatError(f"{listed} lists no classes; write one class name per line, or remove it.")
    else:  # the class count must not depend on the split, or train and val labels would mean different things
        every = [p for s in ("train", "val") if (f := _generic_folders(root, s)) is not None for p in _pair_up(*f)]
        classes = [str(c) for c in range(_max_value(every) + 1)]
        if not classes:
            raise DatasetFormatError(f"Every mask under {root} is 255 (ignore): there is no class to evaluate.")
    return SegmentationFiles(pairs, classes, _fingerprint("generic", split, root, pairs), str(root))


def _voc_root(root: Path) -> Optional[Path]:
    for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (candidate / "ImageSets" / "Segmentation").is_dir() and (candidate / "SegmentationClass").is_dir():
            return candidate
    return None


def _voc(root: Path, split: str) -> SegmentationDataset:
    listing = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not listing.is_file():
        raise DatasetNotFoundError(f"{listing} does not exist: a VOC2012 folder lists its {split} images there.")
    ids = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    if not ids:
        raise DatasetFormatError(f"{listing} lists no images.")
    pairs = [(root / "JPEGImages" / f"{i}.jpg", root / "SegmentationClass" / f"{i}.png") for i in ids]
    missing = next((p for pair in pairs for p in pair if not p.is_file()), None)
    if missing is not None:
        raise DatasetFormatError(f"{missing} is missing, though {listing} lists it.")
    return SegmentationFiles(pairs, VOC_CLASSES, _fingerprint("voc2012", split, root, pairs), str(root))


def _ade_root(root: Path) -> Optional[Path]:
    for candidate in (root, root / "ADEChallengeData2016"):
        if (candidate / "images" / "training").is_dir() and (candidate / "annotations" / "training").is_dir():
            return candidate
    return None


def ade_classes(root: Path) -> list[str]:
    """The 150 names from the release's ``objectInfo150.txt`` (first synonym), else ``class 1`` ... ``class 150``."""
    info = root / "objectInfo150.txt"
    if info.is_file():
        rows = [line.split("\t") for line in info.read_text(encoding="utf-8").splitlines()[1:] if line.strip()]
        names = [row[-1].split(";")[0].strip() for row in rows]
        if len(names) == ADE_CLASSES:
            return names
    return [f"class {i}" for i in range(1, ADE_CLASSES + 1)]


def _ade(root: Path, split: str) -> SegmentationDataset:
    sub = {"train": "training", "val": "validation"}[split]
    pairs = _pair_up(root / "images" / sub, root / "annotations" / sub)
    return SegmentationFiles(pairs, ade_classes(root), _fingerprint("ade20k", split, root, pairs), str(root),
                             label_map=ade_label_map())


def _voc_download() -> Path:
    root = files.cache_dir() / "datasets"
    found = _voc_root(root)
    if found is not None:
        return found
    try:
        import torchvision.datasets

        torchvision.datasets.VOCSegmentation(str(root), year="2012", image_set="trainval", download=True)
    except Exception as e:  # torchvision raises URLError, RuntimeError, OSError... for an unreachable network
        raise DatasetNotFoundError(
            f"Pascal VOC 2012 is not in {root} and could not be downloaded ({type(e).__name__}: {e}). Download"
            f" VOCtrainval_11-May-2012.tar elsewhere, extract it into {root}, or pass the VOCdevkit folder.") from e
    return root / "VOCdevkit" / "VOC2012"


def open_layout(spec: PathLike, split: str) -> SegmentationDataset:
    """One split of a folder layout (or ``voc2012``); see the module docstring."""
    split = _split_name(split)
    root = _voc_download() if str(spec) == VOC_NAME and not Path(spec).exists() else Path(spec).expanduser()
    if not root.is_dir():
        raise DatasetNotFoundError(f"Segmentation data {spec} does not exist. Expected {LAYOUTS_HINT}.")
    voc = _voc_root(root)
    if voc is not None:
        return _voc(voc, split)
    ade = _ade_root(root)
    if ade is not None:
        return _ade(ade, split)
    return _generic(root, split)


def open_segmentation(spec: PathLike, split: str, **mosaic_kwargs) -> SegmentationDataset:
    """One split of a segmentation dataset, by name or folder.

    Args:
        spec: ``cifar10-mosaic`` (mosaics of torchvision's CIFAR-10, downloaded into the cache where the network is)
            or ``cifar10-mosaic:PATH`` (mosaics of the CIFAR-10 at PATH: an ImageFolder tree or the python pickles);
            ``voc2012`` (downloaded through torchvision); or a folder: ``VOCdevkit``/``VOC2012`` as torchvision lays
            it out, ``ADEChallengeData2016``, or the generic layout (see the module docstring).
        split: ``train`` or ``val`` (``test`` means ``val``).
        mosaic_kwargs: for the mosaics only: ``count``, ``size``, ``grids``, ``seed`` (:func:`cifar10_mosaic`).
    """
    text = str(spec)
    if text == MOSAIC or text.startswith(MOSAIC + ":"):
        return cifar10_mosaic(_split_name(split), source=text[len(MOSAIC) + 1:] or None, **mosaic_kwargs)
    if mosaic_kwargs:
        raise ValueError(f"{', '.join(mosaic_kwargs)} only apply to the {MOSAIC} benchmark")
    return open_layout(spec, split)
