"""Opening a dataset by path or name: ImageFolder trees, CIFAR/STL binaries, named downloads, the embedded sample."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path
from typing import Any, Callable, Optional, Union

import torch
from torch.utils.data import Dataset

from .. import files
from .binary import binary_format, cifar_split, stl10_split, train_or_test
from .cache import imagefolder_split
from .decode import (FORMAT_VERSION, FORMATS_HINT, NAMED_DATASETS, DatasetNotFoundError, DecodedSplit, MixedImageSizesError, PathLike,
                     decode_all, load_rgb)
from .folders import DEFAULT_SPLIT_FRACTION, imagefolder_listing, Listing

SAMPLE_ARCHIVE = Path(__file__).resolve().parent.parent / "sample" / "cifar10_sample.zip"


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


def decoded_split(
    root: PathLike,
    split: str,
    *,
    cache_dir: Optional[PathLike] = None,
    image_size: Optional[int] = None,
    split_fraction: float = DEFAULT_SPLIT_FRACTION,
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
    if root.exists() and not root.is_dir():
        raise DatasetNotFoundError(f"{root} is a file, not a dataset folder. Expected {FORMATS_HINT}.")
    if not root.is_dir():
        raise DatasetNotFoundError(f"Dataset folder {root} does not exist. Expected {FORMATS_HINT}.")
    binary = binary_format(root)
    if binary is not None:
        kind, folder = binary
        return stl10_split(folder, split) if kind == "stl10" else cifar_split(folder, split, kind == "cifar100")
    return imagefolder_split(root, split, cache_dir, image_size, split_fraction, seed)


def embedded_sample(split: str = "train") -> DecodedSplit:
    """The CIFAR-10 (JPEG q75) sample shipped in the package: 50 train and 10 test images per class.

    The archive holds the original JPEG bytes of the project's CIFAR-10 copy; see ``sslzoo/sample/README.md``.
    """
    split = train_or_test(split)
    data = SAMPLE_ARCHIVE.read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = sorted(n for n in zf.namelist() if n.startswith(f"{split}/") and n.endswith(".jpg"))
        blobs = [zf.read(n) for n in names]
    classes = sorted({n.split("/")[1] for n in names})
    labels = torch.tensor([classes.index(n.split("/")[1]) for n in names], dtype=torch.int64)
    fingerprint = hashlib.sha256(data + f"\0{split}\0{FORMAT_VERSION}".encode()).hexdigest()
    return DecodedSplit(decode_all(blobs, names, None), labels, classes, fingerprint)


class DecodedDataset(Dataset):
    """A :class:`DecodedSplit` as a torch Dataset of ``(transform(uint8 image (3, H, W)), label)``."""

    def __init__(self, split: DecodedSplit, transform: Optional[Callable[[torch.Tensor], Any]] = None) -> None:
        self.split = split
        self.transform = transform
        self.classes, self.labels = split.classes, split.labels
        self.fingerprint = split.fingerprint

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        img = self.split.images[i]
        return (self.transform(img) if self.transform else img), int(self.split.labels[i])


class ImageFileDataset(Dataset):
    """ImageFolder images decoded when read, for splits whose images differ in size."""

    def __init__(self, listing: Listing, transform: Optional[Callable[[torch.Tensor], Any]] = None) -> None:
        self.files, self.labels = listing.files, listing.labels
        self.classes = listing.classes
        self.fingerprint = listing.fingerprint
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        img = torch.from_numpy(load_rgb(self.files[i])).permute(2, 0, 1).contiguous()
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
        fraction, seed = decode_kwargs.get("split_fraction", DEFAULT_SPLIT_FRACTION), decode_kwargs.get("seed", 0)
        return ImageFileDataset(imagefolder_listing(root, split, None, fraction, seed), transform)
