"""Tiny versions of the six methods (pico ViT: 64 wide, 2 blocks, patch 8, 32 px; small heads) and their inputs."""

from __future__ import annotations

import torch
from torch import Tensor

from training.config import resolve
from training.data.batch import CropBatch, to_unit_float
from training.methods import Method, build_method
from training.views.geometry import crop_in_memory, draw_geometry
from training.views.sample_draws import GEOMETRY, SampleDraws, sample_keys

from tests.training.test_pretrain import METHOD_NAMES, TINY_SETS as RUN_SETS

# the tiny heads of the CPU runs (tests/training/test_pretrain.py); ContrastiveCrop's boxes from the first epoch on,
# so that its guided crops are drawn
TINY_SETS = dict(RUN_SETS, ccrop=[*RUN_SETS["ccrop"], "method_args.warmup_epochs=0", "method_args.interval=1",
                                  "method_args.batch_size=4"])
BATCH = 4
IMAGES = 8  # the training set of the tiny runs
# what fake-tensor steps add: one block (each fake operation costs milliseconds) and drop path on, so that its
# random mask is made; the colour jitter (four masked stages per view) is tested once, in test_views.py
FAKE_STEP = ("arch_kwargs.depth=1", "arch_kwargs.drop_path_rate=0.1", "views.overrides.jitter_p=0.0")


def tiny_config(name: str, *extra: str) -> dict:
    """The resolved config of the tiny ``name``, with ``--set`` items ``extra``."""
    argv = ["--method", name, "--arch", "vit_pico_patch8_32"]
    for item in [*TINY_SETS[name], *extra]:
        argv += ["--set", item]
    return resolve(argv)


def tiny_method(name: str, *extra: str, seed: int = 0) -> Method:
    """The method ``name`` built on CPU, in training mode (``extra``: more ``--set`` items)."""
    torch.manual_seed(seed)
    return build_method(tiny_config(name, *extra), num_images=IMAGES, total_epochs=2,
                        device=torch.device("cpu")).train()


def crop_batch(method: Method, images: Tensor, indices: Tensor, device: torch.device, *, epoch: int = 1,
               seed: int = 0) -> CropBatch:
    """What the in-memory source hands the loop: uint8 ``images`` on ``device``, cropped there (MemorySource's path)."""
    on_device = to_unit_float(images, device)
    specs = method.crop_specs()
    draws = SampleDraws(sample_keys(seed, epoch, indices, GEOMETRY).to(device))
    geometry = draw_geometry(specs, images.shape[-2], images.shape[-1], draws, indices=indices.to(device),
                             epoch=epoch, guide=method.crop_guide())
    return CropBatch(indices.to(device), crop_in_memory(on_device, geometry, specs), geometry, [])
