"""Tiny versions of the six methods (pico ViT: 64 wide, 2 blocks, patch 8, 32 px; small heads) and their inputs."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch
from torch import Tensor

from training.config import resolve
from training.distributed import DistEnv
from training.schedules import param_groups
from training.trainer import Trainer
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


def tiny_trainer(name: str, run_dir: Path, device: torch.device, *, dtype: torch.dtype | None,
                 scaler: torch.amp.GradScaler | None = None, extra: tuple[str, ...] = ()) -> Trainer:
    """A Trainer of the tiny ``name`` (one block) on ``device``, its autocast forced to ``dtype`` (None: fp32), for
    ``loop.train_iteration`` on batches of :func:`random_batch`."""
    extra = ("arch_kwargs.depth=1", "optim.warmup_epochs=0", *extra)
    cfg = tiny_config(name, *extra)
    method = tiny_method(name, *extra).to(device)
    optimizer = torch.optim.AdamW(param_groups(method, decay_all=cfg["optim"]["decay_all"]), lr=0.0)
    tr = Trainer(cfg=cfg, env=DistEnv(rank=0, world_size=1, local_rank=0, device=device), method=method,
                 model=method, optimizer=optimizer, scaler=scaler or torch.amp.GradScaler(device.type, enabled=False),
                 source=None, batches=SimpleNamespace(iters_per_epoch=4), total_iters=4, run_dir=run_dir, monitor=None)
    if dtype is not None:
        tr.autocast = lambda: torch.autocast(device.type, dtype=dtype)  # what amp_dtype gives CUDA runs
    return tr


def random_batch(tr: Trainer, seed: int) -> CropBatch:
    """A batch of seeded noise images, cropped on the trainer's device as the in-memory source does."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (BATCH, 3, 32, 32), dtype=torch.uint8, generator=g)
    return crop_batch(tr.method, images, torch.arange(BATCH) + seed, tr.env.device, epoch=0)
