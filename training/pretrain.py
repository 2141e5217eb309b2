"""``sslzoo pretrain``: self-supervised pre-training of a ViT from a recipe.

Runs on one CPU, one GPU, or many processes and nodes under ``torchrun`` (DDP; gloo on CPU, NCCL on CUDA) with the
same global batch semantics. Input in memory or streamed by DataLoader workers (``training.data``, ``--data-mode``).
AMP (bf16 or fp16) on CUDA, fp32 on CPU. The run folder receives ``config.yaml`` (resolved), ``env.json``,
``log.csv`` and ``checkpoint.pt`` (atomic, every ``ckpt_every`` iterations and at the end; ``--keep N`` keeps the
last N); ``--resume auto`` continues from it, at any world size. A non-finite loss stops the run with a message
naming the step, leaving the last good checkpoint in place, and a non-zero exit status. The loop itself is
``training.loop``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
import yaml

from sslzoo.command_line import EXIT_FAILED, report_error
from sslzoo.cpu_allocator import retain_freed_memory
from sslzoo.errors import SslzooError
from sslzoo.notices import show_notices
from sslzoo.runlog import CsvLog, amp_dtype
from . import distributed
from .checkpoint import find_checkpoint
from .config import resolve
from .data import (DataConfigError, MemorySource, ShardedBatches, StreamEvalImages, StreamSource, choose_mode,
                   list_image_files, load_split)
from .knn_monitor import KnnMonitor
from .loop import LOG_NAME, NonFiniteLossError, fit
from .methods import build_method
from .schedules import param_groups
from .trainer import Trainer, restore

_logger = logging.getLogger(__name__)


def environment(env: distributed.DistEnv) -> dict[str, Any]:
    """Versions, git revision, hardware and world size, for env.json and the model card."""
    import timm

    import sslzoo

    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        rev = None
    hardware = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if env.device.type == "cuda":
        hardware["gpu"] = torch.cuda.get_device_name(env.device)
    return {"python": sys.version.split()[0], "torch": torch.__version__, "timm": timm.__version__,
            "sslzoo": sslzoo.__version__, "git_revision": rev, "hardware": hardware, "world_size": env.world_size,
            "device": str(env.device)}


def _monitor(cfg: dict[str, Any], source, image_size: int, workers: int) -> KnnMonitor | None:
    """The kNN monitor's bank (a seeded subset of train) and queries (``log.knn_split``), decoded in memory."""
    log = cfg["log"]
    if not (log["knn_every_epochs"] or log["knn_every_steps"]):
        return None
    pick = torch.randperm(len(source), generator=torch.Generator().manual_seed(cfg["seed"] + 1))[:log["knn_bank"]]
    if isinstance(source, MemorySource):
        bank = source.data.subset(pick)
        queries = load_split(cfg["data"], log["knn_split"], limit=log["knn_queries"], seed=cfg["seed"],
                             cache_dir=cfg["cache_dir"])
    else:
        bank = source.eval_images.decoded(pick.sort().values, image_size)
        files = list_image_files(cfg["data"], log["knn_split"], cache_dir=cfg["cache_dir"], seed=cfg["seed"])
        files = files.subset(log["knn_queries"], cfg["seed"])
        queries = StreamEvalImages(files, workers).decoded(torch.arange(len(files)), image_size)
    return KnnMonitor(bank, queries, k=log["knn_k"])


def build(cfg: dict[str, Any], env: distributed.DistEnv) -> Trainer:
    """Data, method, optimizer and monitor for a resolved config (fresh weights; see :func:`restore`)."""
    torch.manual_seed(cfg["seed"])
    if env.device.type == "cpu" and cfg["cpu_allocator"] == "retain":
        retain_freed_memory()  # before the data are decoded, and inherited by the workers forked later
    mode, files, data = choose_mode(cfg)
    num_images = len(data) if data is not None else len(files)
    batches = ShardedBatches(num_images, cfg["batch_size"], seed=cfg["seed"], rank=env.rank,
                             world_size=env.world_size)
    if batches.local_batch % cfg["accum_steps"]:
        raise DataConfigError(f"the per-process batch {batches.local_batch} must be divisible by --accum-steps "
                              f"{cfg['accum_steps']}.")
    ipe = batches.iters_per_epoch
    total_iters = int(cfg["steps"]) if cfg["steps"] else int(cfg["epochs"]) * ipe
    total_epochs = math.ceil(total_iters / ipe)
    method = build_method(cfg, num_images=num_images, total_epochs=total_epochs, device=env.device)
    if cfg["grad_checkpointing"]:
        method.framework.backbone.set_grad_checkpointing(True)
    if cfg["compile"]:
        compile_blocks(method.framework.backbone)
    method.train()
    specs, guide = method.crop_specs(), method.crop_guide()
    if mode == "memory":
        source = MemorySource(data, batches, specs, seed=cfg["seed"], guide=guide, device=env.device)
    else:
        source = StreamSource(files, batches, specs, seed=cfg["seed"], guide=guide, device=env.device,
                              workers=cfg["workers"], prefetch=cfg["prefetch"])
    _logger.info("Training on %d images of %s (%s mode).", num_images, cfg["data"], mode)
    optimizer = build_optimizer(method, cfg["optim"], env.device)
    scaler = torch.amp.GradScaler(env.device.type, enabled=amp_dtype(env.device, cfg["amp"]) == torch.float16)
    monitor = _monitor(cfg, source, method.image_size, cfg["workers"]) if env.is_main else None
    return Trainer(cfg=cfg, env=env, method=method, model=distributed.wrap_ddp(method, env), optimizer=optimizer,
                   scaler=scaler, source=source, batches=batches, total_iters=total_iters,
                   run_dir=Path(cfg["output"]), monitor=monitor)


def build_optimizer(method: torch.nn.Module, opt: dict[str, Any], device: torch.device) -> torch.optim.AdamW:
    """AdamW over the trainable parameters (the frozen twins are left out), fused on CUDA: one kernel for all
    parameters, which fused AdamW allows when they are floating-point tensors on the GPU, as the method is by now."""
    fused = {"fused": True} if device.type == "cuda" else {}
    return torch.optim.AdamW(param_groups(method, decay_all=opt["decay_all"]), lr=0.0, betas=tuple(opt["betas"]),
                             weight_decay=opt["weight_decay"], **fused)


def compile_blocks(vit: torch.nn.Module) -> None:
    """``torch.compile`` every transformer block in place (the blocks are what every method's token paths share)."""
    for block in vit.blocks:
        block.compile()


def write_run_files(tr: Trainer) -> None:
    if not tr.env.is_main:
        return
    tr.run_dir.mkdir(parents=True, exist_ok=True)
    (tr.run_dir / "config.yaml").write_text(yaml.safe_dump(tr.cfg, sort_keys=False), encoding="utf-8")
    env_path = tr.run_dir / "env.json"
    info = environment(tr.env)
    if env_path.exists():  # keep the first start's record, add this one
        previous = json.loads(env_path.read_text(encoding="utf-8"))
        info = dict(previous, resumed=previous.get("resumed", []) + [info])
    env_path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def train(cfg: dict[str, Any], *, stop_at: int | None = None) -> Trainer:
    """Run (or resume) a training run for a resolved config; returns the trainer at the end."""
    env = distributed.init_distributed(cfg["device"])
    tr = build(cfg, env)
    resume = cfg["resume"]
    path = find_checkpoint(tr.run_dir) if resume == "auto" else (Path(resume) if resume else None)
    if resume and resume != "auto" and not path.is_file():
        raise SslzooError(f"--resume {resume}: no such checkpoint; pass 'auto' or a checkpoint path.")
    if path is not None:
        restore(tr, path)
        if tr.env.is_main:
            # the rows logged after the checkpoint are repeated by the resumed run: one timeline per file
            CsvLog(tr.run_dir / LOG_NAME).rewind(tr.iteration, key="iteration")
    elif tr.env.is_main and find_checkpoint(tr.run_dir) is not None:
        raise SslzooError(f"{tr.run_dir} already holds a checkpoint; pass --resume auto to continue it or choose "
                          "another --output.")
    write_run_files(tr)
    return fit(tr, stop_at=stop_at)


def main(argv: list[str] | None = None, prog: str = "sslzoo pretrain") -> int:
    """The program (also ``sslzoo pretrain``); returns its exit status: 0, 1 (the run failed) or 2 (user error)."""
    show_notices()
    show_notices("training", "training")
    try:
        cfg = resolve(argv, prog=prog)
        tr = train(cfg)
        if tr.env.is_main:
            print(f"done: {tr.iteration} iterations in {tr.elapsed:.1f} s; run folder {tr.run_dir}")
        return 0
    except NonFiniteLossError as e:  # the run itself failed; its last good checkpoint is kept
        return report_error(prog, e, EXIT_FAILED)
    except SslzooError as e:  # the recipe, a flag, the data or the run folder: the user can fix it
        return report_error(prog, e)
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    sys.exit(main())
