"""Streaming input: DataLoader workers decode image files and cut each image's crops, batches travel as uint8.

:class:`StreamCrops` is the worker's side. Item ``(epoch, i)`` decodes file i (torchvision's decoder, PIL for what
it cannot read), draws the geometry of every crop the method asks for from sample i's own random numbers
(``training.views.geometry.draw_geometry`` on a batch of one, with the per-sample draws of
``training.views.sample_draws``, so a worker gives exactly the boxes and flips the in-memory path gives), crops and
resizes each with torchvision's ``resized_crop`` (antialiased, as ``RandomResizedCrop``), flips it, and returns the
uint8 crops with their boxes and flags.

An unreadable file never ends a run: the item reports its path (``bad``) and carries the crops of the next readable
file instead (i + 1, i + 2, ... modulo the split, so the replacement is deterministic); the loop logs and counts it,
or stops with the file's name under ``--strict-data``.

:class:`WholeImages` serves passes without augmentation: each image resized whole to a square (ContrastiveCrop's
heat maps are read in normalised image coordinates, the kNN monitor's eval transform then sees the model's size).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from sslzoo.data import DatasetFormatError
from sslzoo.data.decode import load_rgb
from .file_list import FileList
from ..views.geometry import CropGuide, CropSpec, draw_geometry
from ..views.sample_draws import GEOMETRY, SampleDraws, sample_keys

MAX_REPLACEMENTS = 64


def decode_rgb(path: str) -> Tensor:
    """uint8 (3, H, W) RGB of an image file; raises :class:`DatasetFormatError` for a file nothing can decode."""
    from torchvision.io import ImageReadMode, decode_image, read_file

    try:
        with warnings.catch_warnings():  # torchvision 0.29 deprecates its decoders for TorchCodec's; still 1.4x PIL
            warnings.simplefilter("ignore", DeprecationWarning)
            return decode_image(read_file(path), mode=ImageReadMode.RGB)
    except (RuntimeError, ValueError, OSError):
        # formats torchvision's decoders lack, and the corrupt files PIL reports with a clear message
        return torch.from_numpy(load_rgb(Path(path))).permute(2, 0, 1).contiguous()


def decode_readable(files: FileList, index: int) -> tuple[Tensor, int, str]:
    """The image of file ``index`` or of the next readable one: (image, its index, the first unreadable path)."""
    bad = ""
    for k in range(MAX_REPLACEMENTS):
        j = (index + k) % len(files)
        try:
            return decode_rgb(files.paths[j]), j, bad
        except (DatasetFormatError, OSError, RuntimeError, ValueError) as e:
            bad = bad or f"{files.paths[j]} ({type(e).__name__}: {(str(e).splitlines() or [''])[0]})"
    raise DatasetFormatError(f"{MAX_REPLACEMENTS} consecutive files from {files.paths[index]} cannot be decoded; "
                             "check the data folder.")


def _interpolation(name: str):
    from torchvision.transforms import InterpolationMode

    return {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}[name]


def cut_crops(image: Tensor, spec: CropSpec, boxes: Tensor, flipped: Tensor) -> Tensor:
    """The flipped uint8 crops (k, 3, s, s) of one image for ``boxes`` (k, 4) (top, left, height, width)."""
    from torchvision.transforms.v2.functional import resized_crop

    out = []
    for (top, left, h, w), flip in zip(boxes.round().long().tolist(), flipped.tolist()):
        crop = resized_crop(image, top, left, h, w, [spec.size, spec.size], interpolation=_interpolation(
            spec.interpolation), antialias=True)
        out.append(crop.flip(-1) if flip else crop)
    return torch.stack(out)


class StreamCrops(Dataset):
    """Item ``(epoch, index)``: the crops of image ``index`` for ``specs``, drawn as sample ``index`` of ``epoch``."""

    def __init__(self, files: FileList, specs: list[CropSpec], *, seed: int, guide: CropGuide | None = None) -> None:
        self.files, self.specs, self.seed, self.guide = files, specs, seed, guide

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, item: tuple[int, int]) -> dict[str, Any]:
        epoch, index = item
        image, source, bad = decode_readable(self.files, index)
        indices = torch.tensor([index])
        draws = SampleDraws(sample_keys(self.seed, epoch, indices, GEOMETRY))
        geometry = draw_geometry(self.specs, image.shape[-2], image.shape[-1], draws, indices=indices, epoch=epoch,
                                 guide=self.guide)
        crops, boxes, flips = {}, {}, {}
        for spec in self.specs:
            geom = geometry[spec.name]
            cut = cut_crops(image, spec, geom.boxes.reshape(-1, 4), geom.flipped.reshape(-1))
            crops[spec.name] = cut if spec.count is not None else cut[0]
            boxes[spec.name], flips[spec.name] = geom.boxes[0], geom.flipped[0]
        return {"index": index, "source": source, "bad": bad, "crops": crops, "boxes": boxes, "flipped": flips,
                "height": image.shape[-2], "width": image.shape[-1]}


class WholeImages(Dataset):
    """Item ``index``: image ``index`` resized whole to ``size`` x ``size`` (uint8), bilinear and antialiased."""

    def __init__(self, files: FileList, size: int) -> None:
        self.files, self.size = files, size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Tensor:
        from torchvision.transforms.v2.functional import resize

        image, _, _ = decode_readable(self.files, index)
        return resize(image, [self.size, self.size], interpolation=_interpolation("bilinear"), antialias=True)
