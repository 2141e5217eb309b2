"""Datasets as decoded uint8 tensors, and the eval transform of a model applied to them.

Every format (ImageFolder trees, the CIFAR-10/100 python pickles, STL-10 binaries, the embedded sample) ends as one
:class:`DecodedSplit`: all images of a split in one ``uint8 (N, 3, H, W)`` tensor. JPEG decoding is the slow part of
evaluating a small ViT on CPU, so an ImageFolder split is decoded once and cached as a safetensors file keyed by a
fingerprint of its files; the binary formats are read directly (reading them is as fast as reading a cache).
"""

from __future__ import annotations

from PIL import Image  # noqa: F401 - tests patch Image.open here

from .binary import STL10_CLASSES
from .classes import ClassesError, check_classes
from .decode import (FORMAT_VERSION, IMAGE_EXTENSIONS, DatasetFormatError, DatasetNotFoundError, DecodedSplit,
                     MixedImageSizesError, UnreadableImagesError, pil_to_uint8)
from .datasets import (NAMED_DATASETS, SAMPLE_ARCHIVE, DecodedDataset, ImageFileDataset, decoded_split,
                       embedded_sample, open_dataset)
from .transforms import EvalTransform, eval_transform

__all__ = [
    "FORMAT_VERSION", "IMAGE_EXTENSIONS", "NAMED_DATASETS", "SAMPLE_ARCHIVE", "STL10_CLASSES", "ClassesError",
    "DatasetFormatError", "DatasetNotFoundError", "DecodedDataset", "DecodedSplit", "EvalTransform", "ImageFileDataset",
    "MixedImageSizesError", "UnreadableImagesError", "check_classes", "decoded_split", "embedded_sample",
    "eval_transform", "open_dataset", "pil_to_uint8",
]
