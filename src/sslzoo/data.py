"""Datasets as decoded uint8 tensors, and the eval transform of a model applied to them.

Every format (ImageFolder trees, the CIFAR-10/100 python pickles, STL-10 binaries, the embedded sample) ends as one
:class:`DecodedSplit`: all images of a split in one ``uint8 (N, 3, H, W)`` tensor. JPEG decoding is the slow part of
evaluating a small ViT on CPU, so an ImageFolder split is decoded once and cached as a safetensors file keyed by a
fingerprint of its files; the binary formats are read directly (reading them is as fast as reading a cache).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import pickle
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image
from safetensors import SafetensorError, safe_open
from torch.utils.data import Dataset

from . import files
from .errors import SslzooError

_logger = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when the decoded cache's layout or decoding changes: old cache files are then ignored
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")
SAMPLE_ARCHIVE = Path(__file__).with_name("sample") / "cifar10_sample.zip"
STL10_CLASSES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
# name -> (folder that torchvision extracts, torchvision dataset class, where the files come from)
NAMED_DATASETS = {
    "cifar10": ("cifar-10-batches-py", "CIFAR10", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
    "cifar100": ("cifar-100-python", "CIFAR100", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"),
    "stl10": ("stl10_binary", "STL10", "https://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz"),
}
_FORMATS_HINT = (
    "an ImageFolder tree (train/ and test/ or val/ with one folder per class, or just the class folders), "
    "a cifar-10-batches-py, cifar-100-python or stl10_binary folder, or one of the names "
    f"{', '.join(['sample', *NAMED_DATASETS])}"
)

PathLike = Union[str, os.PathLike]


class DatasetNotFoundError(SslzooError, FileNotFoundError):
    """A dataset folder, split or file that does not exist."""


class DatasetFormatError(SslzooError, ValueError):
    """A dataset whose files are empty, corrupt, inconsistent or of an unexpected layout."""


class MixedImageSizesError(DatasetFormatError):
    """Images of one split that do not share one size, with no ``image_size`` to resize them to."""


@dataclass(frozen=True)
class DecodedSplit:
    """All images of one split, decoded.

    Attributes:
        images: ``uint8 (N, 3, H, W)`` RGB.
        labels: ``int64 (N,)`` indices into ``classes`` (-1 for unlabelled images).
        classes: class names, in label order.
        fingerprint: identifies the split's content (files, sizes, modification times, decoding options).
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    fingerprint: str

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must be uint8 (N, 3, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (len(self.images),):
            raise ValueError(f"{len(self.images)} images but labels of shape {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return len(self.images)


# --------------------------------------------------------------------------------------------------- fingerprints


def _fingerprint(header: dict[str, Any], root: Path, files: Sequence[Path]) -> str:
    """sha256 of the decoding options and of each file's path (relative to ``root``), size and modification time."""
    h = hashlib.sha256(json.dumps({"format_version": FORMAT_VERSION, **header}, sort_keys=True).encode())
    for path in files:
        st = path.stat()
        h.update(f"{path.relative_to(root).as_posix()}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


# --------------------------------------------------------------------------------------------------- decoding images


def _load_rgb(source: Union[Path, bytes], image_size: Optional[int] = None, name: Optional[str] = None) -> np.ndarray:
    """Decode one image to ``uint8 (H, W, 3)``; ``image_size`` resizes the shorter side, then crops the centre."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
            if im.mode == "P" and "transparency" in im.info:
                im = im.convert("RGBA")  # PIL warns when a palette with transparency goes straight to RGB
            im = im.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DatasetFormatError(f"Cannot read image {name or source}: {e}. Remove or replace the file.") from e
    if image_size is not None and im.size != (image_size, image_size):
        scale = image_size / min(im.size)
        w, h = max(image_size, round(im.width * scale)), max(image_size, round(im.height * scale))
        im = im.resize((w, h), Image.BICUBIC)
        left, top = (w - image_size) // 2, (h - image_size) // 2
        im = im.crop((left, top, left + image_size, top + image_size))
    return np.array(im)  # writable, so that torch.from_numpy does not warn


def _decode_all(sources: Sequence[Union[Path, bytes]], names: Sequence[str], image_size: Optional[int]) -> torch.Tensor:
    """Decode images into one ``uint8 (N, 3, H, W)`` tensor; PIL releases the GIL while decoding, so threads help."""
    first = _load_rgb(sources[0], image_size, names[0])
    out = torch.empty((len(sources), 3, *first.shape[:2]), dtype=torch.uint8)

    def decode(i: int) -> None:
        arr = first if i == 0 else _load_rgb(sources[i], image_size, names[i])
        if arr.shape != first.shape:
            raise MixedImageSizesError(
                f"Images of one split have different sizes: {names[0]} is {first.shape[1]}x{first.shape[0]}, "
                f"{names[i]} is {arr.shape[1]}x{arr.shape[0]}. Pass image_size=N to decode them all at N x N "
                "(shorter side resized to N, then a centre crop), or use open_dataset(...), which decodes each "
                "image when it is read and lets the model's eval transform resize it."
            )
        out[i] = torch.from_numpy(arr).permute(2, 0, 1)

    pool = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1))
    try:
        for _ in pool.map(decode, range(len(sources))):
            pass  # iterating re-raises the first error
    finally:
        pool.shutdown(cancel_futures=True)  # after an error, do not decode the rest of the split
    return out


# --------------------------------------------------------------------------------------------------- ImageFolder


@dataclass(frozen=True)
class _Listing:
    """The image files of one ImageFolder split, before decoding."""

    files: list[Path]
    labels: list[int]
    classes: list[str]
    fingerprint: str


def _class_folders(folder: Path) -> list[str]:
    classes = sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise DatasetFormatError(f"{folder} has no class folders. Expected {_FORMATS_HINT}.")
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


def _held_out(labels: list[int], split: str, fraction: float, seed: int) -> list[int]:
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


def _imagefolder_listing(root: Path, split: str, image_size: Optional[int], fraction: float, seed: int) -> _Listing:
    present = {name: root / name for name in ("train", "test", "val") if (root / name).is_dir()}
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
        keep = _held_out(all_labels, split, fraction, seed)
        files, labels = [all_files[i] for i in keep], [all_labels[i] for i in keep]
        header.update(split_fraction=fraction, seed=seed)
    return _Listing(files, labels, classes, _fingerprint(header, root, files))


def _cache_file(cache_dir: Optional[PathLike], fingerprint: str) -> Path:
    return (Path(cache_dir).expanduser() if cache_dir else files.cache_dir()) / "decoded" / f"{fingerprint}.safetensors"


def _read_cache(path: Path, fingerprint: str) -> Optional[DecodedSplit]:
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            images, labels = f.get_tensor("images"), f.get_tensor("labels")
        return DecodedSplit(images, labels, json.loads(meta["classes"]), fingerprint)
    except (SafetensorError, OSError, KeyError, ValueError) as e:
        _logger.warning("Ignoring unreadable decoded-data cache %s (%s); decoding again.", path, e)
        return None


def _imagefolder_split(
    root: Path, split: str, cache_dir: Optional[PathLike], image_size: Optional[int], fraction: float, seed: int
) -> DecodedSplit:
    listing = _imagefolder_listing(root, split, image_size, fraction, seed)
    path = _cache_file(cache_dir, listing.fingerprint)
    cached = _read_cache(path, listing.fingerprint)
    if cached is not None:
        return cached
    _logger.info("Decoding %d images of %s (%s) once; cached at %s", len(listing.files), root, split, path)
    images = _decode_all(listing.files, [str(p) for p in listing.files], image_size)
    out = DecodedSplit(images, torch.tensor(listing.labels, dtype=torch.int64), listing.classes, listing.fingerprint)
    meta = {"classes": json.dumps(out.classes), "root": str(root), "split": split}
    files.save_safetensors({"images": out.images, "labels": out.labels}, path, metadata=meta)
    return out


# --------------------------------------------------------------------------------------------------- binary formats


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


def _train_or_test(split: str) -> str:
    if split not in ("train", "test", "val"):
        raise DatasetNotFoundError(f"Unknown split {split!r}: use 'train' or 'test'.")
    return "train" if split == "train" else "test"


def _cifar_split(folder: Path, split: str, hundred: bool) -> DecodedSplit:
    split = _train_or_test(split)
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
    fp = _fingerprint(header, folder, [folder / f for f in [meta_file, *files]])
    return DecodedSplit(torch.from_numpy(images), torch.from_numpy(labels), classes, fp)


def _stl10_split(folder: Path, split: str) -> DecodedSplit:
    if split != "unlabeled":
        split = _train_or_test(split)
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
    fp = _fingerprint({"kind": "stl10", "split": split}, folder, [f for f in (x_file, y_file) if f is not None])
    return DecodedSplit(torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels), classes, fp)


def _binary_format(root: Path) -> Optional[tuple[str, Path]]:
    """``(kind, folder)`` when ``root`` is, or directly holds, a CIFAR pickle or STL-10 binary folder."""
    for folder in (root, *(root / sub for sub, _, _ in NAMED_DATASETS.values())):
        if (folder / "data_batch_1").is_file() or (folder / "test_batch").is_file():
            return "cifar10", folder
        if (folder / "meta").is_file() and ((folder / "train").is_file() or (folder / "test").is_file()):
            return "cifar100", folder
        if (folder / "train_X.bin").is_file() or (folder / "test_X.bin").is_file():
            return "stl10", folder
    return None


def _named_root(name: str) -> Path:
    """The folder of a named dataset in the cache, downloaded through torchvision the first time."""
    sub, tv_class, url = NAMED_DATASETS[name]
    root = files.cache_dir() / "datasets"
    if not (root / sub).is_dir():
        import torchvision.datasets

        cls = getattr(torchvision.datasets, tv_class)
        try:
            cls(str(root), **({"split": "train"} if name == "stl10" else {}), download=True)
        except Exception as e:  # torchvision raises URLError, RuntimeError, OSError... for an unreachable network
            raise DatasetNotFoundError(
                f"Dataset {name!r} is not in {root} and could not be downloaded ({type(e).__name__}: {e}). "
                f"Without network access, download {url} elsewhere and extract it into {root} so that "
                f"{root / sub} exists, or pass the path of the extracted {sub} folder instead of the name."
            ) from e
    return root / sub


# --------------------------------------------------------------------------------------------------- public API


def decoded_split(
    root: PathLike,
    split: str,
    *,
    cache_dir: Optional[PathLike] = None,
    image_size: Optional[int] = None,
    split_fraction: float = 0.1,
    seed: int = 0,
) -> DecodedSplit:
    """All images of one split of a dataset, decoded into one uint8 tensor.

    Args:
        root: an ImageFolder tree (``train/`` and ``test/`` or ``val/``, or only class folders), a
            ``cifar-10-batches-py``, ``cifar-100-python`` or ``stl10_binary`` folder (or a folder holding one),
            or one of the names ``cifar10``, ``cifar100``, ``stl10`` (downloaded through torchvision into the cache).
        split: ``train``, ``test`` or ``val`` (``test`` finds ``val/`` where there is no ``test/``, and the other way
            round); STL-10 also has ``unlabeled`` (labels -1).
        cache_dir: where decoded ImageFolder splits are cached; default ``$SSLZOO_CACHE`` or ``~/.cache/sslzoo``.
        image_size: for ImageFolder images of different sizes: decode all at ``image_size`` x ``image_size``
            (shorter side resized with bicubic, then a centre crop).
        split_fraction: for a folder of class folders without splits, the seeded per-class share held out as test.
        seed: the seed of that held-out split.

    Raises:
        DatasetNotFoundError: the root, the split or one of its files does not exist.
        DatasetFormatError: empty or unreadable images, or class folders that differ between splits (named).
    """
    if str(root) in NAMED_DATASETS and not Path(root).exists():
        root = _named_root(str(root))
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetNotFoundError(f"Dataset folder {root} does not exist. Expected {_FORMATS_HINT}.")
    binary = _binary_format(root)
    if binary is not None:
        kind, folder = binary
        return _stl10_split(folder, split) if kind == "stl10" else _cifar_split(folder, split, kind == "cifar100")
    return _imagefolder_split(root, split, cache_dir, image_size, split_fraction, seed)


def embedded_sample(split: str = "train") -> DecodedSplit:
    """The CIFAR-10 (JPEG q75) sample shipped in the package: 50 train and 10 test images per class.

    The archive holds the original JPEG bytes of the project's CIFAR-10 copy; see ``sslzoo/sample/README.md``.
    """
    split = _train_or_test(split)
    data = SAMPLE_ARCHIVE.read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = sorted(n for n in zf.namelist() if n.startswith(f"{split}/") and n.endswith(".jpg"))
        blobs = [zf.read(n) for n in names]
    classes = sorted({n.split("/")[1] for n in names})
    labels = torch.tensor([classes.index(n.split("/")[1]) for n in names], dtype=torch.int64)
    fingerprint = hashlib.sha256(data + f"\0{split}\0{FORMAT_VERSION}".encode()).hexdigest()
    return DecodedSplit(_decode_all(blobs, names, None), labels, classes, fingerprint)


class DecodedDataset(Dataset):
    """A :class:`DecodedSplit` as a torch Dataset of ``(transform(uint8 image (3, H, W)), label)``."""

    def __init__(self, split: DecodedSplit, transform: Optional[Callable[[torch.Tensor], Any]] = None) -> None:
        self.split = split
        self.transform = transform
        self.classes = split.classes
        self.fingerprint = split.fingerprint

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        img = self.split.images[i]
        return (self.transform(img) if self.transform else img), int(self.split.labels[i])


class ImageFileDataset(Dataset):
    """ImageFolder images decoded when read, for splits whose images differ in size."""

    def __init__(self, listing: _Listing, transform: Optional[Callable[[torch.Tensor], Any]] = None) -> None:
        self.files, self.labels = listing.files, listing.labels
        self.classes = listing.classes
        self.fingerprint = listing.fingerprint
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        img = torch.from_numpy(_load_rgb(self.files[i])).permute(2, 0, 1).contiguous()
        return (self.transform(img) if self.transform else img), self.labels[i]


def open_dataset(
    spec: PathLike, split: str, *, transform: Optional[Callable[[torch.Tensor], Any]] = None, **decode_kwargs: Any
) -> Union[DecodedDataset, ImageFileDataset]:
    """A torch Dataset of ``(image, label)`` for a dataset path, a dataset name or ``"sample"``.

    Images reach ``transform`` as ``uint8 (3, H, W)`` tensors (without one, those tensors are the items).
    ``decode_kwargs`` go to :func:`decoded_split`. An ImageFolder split whose images differ in size (and no
    ``image_size`` given) is read image by image, so that the eval transform can resize each.
    """
    if str(spec) == "sample" and not Path(spec).exists():
        return DecodedDataset(embedded_sample(split), transform)
    try:
        return DecodedDataset(decoded_split(spec, split, **decode_kwargs), transform)
    except MixedImageSizesError:
        root = Path(spec).expanduser()
        fraction, seed = decode_kwargs.get("split_fraction", 0.1), decode_kwargs.get("seed", 0)
        return ImageFileDataset(_imagefolder_listing(root, split, None, fraction, seed), transform)


# --------------------------------------------------------------------------------------------------- eval transform


def pil_to_uint8(img: Image.Image) -> torch.Tensor:
    """A PIL image as an RGB ``uint8 (3, H, W)`` tensor."""
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1).contiguous()


def _uint8_step(step: Callable) -> Callable:
    """torchvision's v2 resize of a uint8 tensor stays in uint8 (as PIL does) and is several times faster than the
    v1 ``Resize`` that timm builds, which resizes in float; measured against PIL's bicubic, v2 is also closer."""
    from torchvision import transforms
    from torchvision.transforms.v2 import functional as F

    if isinstance(step, transforms.Resize):
        return partial(
            F.resize, size=step.size, interpolation=step.interpolation, max_size=step.max_size, antialias=True
        )
    if isinstance(step, transforms.CenterCrop):
        return partial(F.center_crop, output_size=list(step.size))
    return step  # timm's own steps (ResizeKeepRatio, CenterCropOrPad, TrimBorder) take tensors as they are


class EvalTransform:
    """A model's eval transform (timm's ``resolve_model_data_config`` + ``create_transform``) on uint8 tensors.

    The geometric steps are those of timm's transform, applied to ``uint8 (3, H, W)`` or batched ``(B, 3, H, W)``
    tensors (resize and crop through torchvision's v2 functions, which keep uint8 as PIL does); the conversion to
    float and the normalisation follow. On PIL images it agrees with timm's transform to 2 intensity levels. Where
    the input already has the model's size and ``crop_pct`` keeps it (CIFAR models, ``crop_pct=1``), only the
    conversion runs.
    """

    def __init__(self, data_config: dict[str, Any]) -> None:
        from timm.data import create_transform
        from timm.data.transforms import MaybeToTensor, ToNumpy, ToTensor
        from torchvision import transforms

        self.config = {k: v for k, v in data_config.items() if v is not None}
        pipeline = create_transform(**self.config, is_training=False)
        skip = (MaybeToTensor, ToTensor, ToNumpy, transforms.ToTensor, transforms.PILToTensor, transforms.Normalize)
        self.geometry = [_uint8_step(t) for t in pipeline.transforms if not isinstance(t, skip)]
        _, h, w = self.config["input_size"]
        crop_pct = self.config.get("crop_pct") or 0.875  # timm's DEFAULT_CROP_PCT
        self._identity_size = (h, w) if (math.floor(h / crop_pct), math.floor(w / crop_pct)) == (h, w) else None
        self._scale = 1.0 / (255.0 * torch.tensor(self.config["std"], dtype=torch.float32).view(3, 1, 1))
        self._shift = torch.tensor(self.config["mean"], dtype=torch.float32).view(3, 1, 1) * 255.0

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.config["input_size"][1:])

    def describe(self) -> str:
        """A stable description, used in cache keys."""
        return json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in self.config.items()}, sort_keys=True)

    def __repr__(self) -> str:
        return f"EvalTransform({self.describe()})"

    def resize_crop(self, img: Union[torch.Tensor, Image.Image]) -> torch.Tensor:
        """The geometric steps only: the uint8 picture the model sees, before normalisation."""
        if isinstance(img, Image.Image):
            img = pil_to_uint8(img)
        if img.dtype != torch.uint8:
            raise TypeError(f"EvalTransform takes uint8 images or PIL images, got a {img.dtype} tensor")
        if tuple(img.shape[-2:]) != self._identity_size:
            for step in self.geometry:
                img = step(img)
        return img

    def normalize(self, img: torch.Tensor) -> torch.Tensor:
        """uint8 pixels already at the model's size -> the model's normalised float input."""
        return (img.float() - self._shift.to(img.device)) * self._scale.to(img.device)

    def __call__(self, img: Union[torch.Tensor, Image.Image]) -> torch.Tensor:
        return self.normalize(self.resize_crop(img))


def eval_transform(model: torch.nn.Module) -> EvalTransform:
    """The model's eval transform, resolved from its ``pretrained_cfg`` as timm does, for uint8 tensors."""
    from timm.data import resolve_model_data_config

    return EvalTransform(resolve_model_data_config(model))
