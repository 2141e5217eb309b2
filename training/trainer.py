"""What one training process holds (:class:`Trainer`), its full state for the checkpoint, and restoring it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sslzoo.errors import SslzooError
from sslzoo.runlog import amp_dtype, autocast
from . import distributed
from .checkpoint import load_checkpoint, rng_state, save_run_checkpoint, set_rng_state
from .data import MemorySource, ShardedBatches, StreamSource
from .knn_monitor import KnnMonitor
from .methods import Method


@dataclass
class Trainer:
    """Everything one training process holds."""

    cfg: dict[str, Any]
    env: distributed.DistEnv
    method: Method
    model: torch.nn.Module  # the method, DDP-wrapped when distributed
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    source: MemorySource | StreamSource
    batches: ShardedBatches
    total_iters: int
    run_dir: Path
    monitor: KnnMonitor | None
    iteration: int = 0
    elapsed: float = 0.0  # seconds inside the iterations' views, forward, backward and steps
    wall_clock: float = 0.0  # seconds of the training loop: the iterations, data waits, checkpoints, monitoring
    last_knn: float | None = None
    replaced_images: int = 0  # unreadable files met while streaming, each replaced by another sample
    log_sums: dict[str, float] = field(default_factory=dict)

    @property
    def total_steps(self) -> int:
        return self.total_iters * self.method.substeps

    @property
    def steps_per_epoch(self) -> int:
        return self.batches.iters_per_epoch * self.method.substeps

    def autocast(self):
        """Mixed precision as ``cfg['amp']`` says (CUDA only; CPU runs are fp32)."""
        return autocast(self.env.device, amp_dtype(self.env.device, self.cfg["amp"]))


def state(tr: Trainer) -> dict[str, Any]:
    """The full training state (see training/checkpoint.py)."""
    return {"method": tr.method.state_dict(), "extra": tr.method.extra_state(),
            "optimizer": tr.optimizer.state_dict(), "scaler": tr.scaler.state_dict(), "iteration": tr.iteration,
            "epoch": tr.iteration // tr.batches.iters_per_epoch,
            "iters_per_epoch": tr.batches.iters_per_epoch, "global_batch": tr.batches.global_batch,
            "elapsed": tr.elapsed, "wall_clock": tr.wall_clock, "rng": rng_state(), "method_name": tr.cfg["method"],
            "world_size": tr.env.world_size, "replaced_images": tr.replaced_images, "num_images": len(tr.source)}


def restore(tr: Trainer, path: Path) -> None:
    """Continue from a checkpoint (at any world size: the global batch, not the per-rank one, defines the run)."""
    ckpt = load_checkpoint(path, map_location=tr.env.device)
    if ckpt["method_name"] != tr.cfg["method"]:
        raise SslzooError(f"{path} was written by a {ckpt['method_name']} run, not {tr.cfg['method']}; "
                          "resume with the same recipe or choose another --output.")
    if int(ckpt["iters_per_epoch"]) != tr.batches.iters_per_epoch or \
            int(ckpt.get("global_batch", tr.batches.global_batch)) != tr.batches.global_batch:
        raise SslzooError(
            f"{path} was written with a global batch of {ckpt.get('global_batch', '?')} images and "
            f"{ckpt['iters_per_epoch']} iterations per epoch; this run has {tr.batches.global_batch} and "
            f"{tr.batches.iters_per_epoch}. Resume with the same --batch-size and training set (the number of "
            "processes may change).")
    tr.method.load_state_dict(ckpt["method"])
    tr.method.load_extra_state(ckpt["extra"])
    tr.optimizer.load_state_dict(ckpt["optimizer"])
    tr.scaler.load_state_dict(ckpt["scaler"])
    tr.iteration, tr.elapsed = int(ckpt["iteration"]), float(ckpt["elapsed"])
    tr.wall_clock = float(ckpt.get("wall_clock", tr.elapsed))
    tr.replaced_images = int(ckpt.get("replaced_images", 0))
    set_rng_state(ckpt["rng"])


def write_checkpoint(tr: Trainer) -> None:
    if tr.env.is_main:
        save_run_checkpoint(tr.run_dir, state(tr), iteration=tr.iteration, keep=tr.cfg["keep"])
    distributed.barrier()
