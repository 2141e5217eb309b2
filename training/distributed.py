"""torch.distributed for training: set-up from torchrun's variables, gathers, global-batch BatchNorm, DDP.

Gloo on CPU, NCCL on CUDA. Everything here also works without a process group (world size 1), so the loop and the
methods have one code path.

BatchNorm over the global batch: on CUDA, ``torch.nn.SyncBatchNorm``; on CPU, where SyncBatchNorm refuses to run,
:class:`GlobalBatchNorm1d` all-reduces the per-channel sums with autograd (``torch.distributed.nn``), which gives
the same statistics and gradients as one process holding the global batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
from torch import Tensor, nn

from sslzoo.runlog import resolve_device


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the job."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str | None = None) -> DistEnv:
    """Join the torchrun job described by RANK/WORLD_SIZE/LOCAL_RANK (gloo on CPU, NCCL on CUDA), if any.

    Args:
        device: ``cpu``, ``cuda`` (this process's GPU: its local rank) or None (CUDA when available); see
            :func:`sslzoo.runlog.resolve_device` (a CUDA device where there is none is its ``DeviceError``).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, index=local)
    use_cuda = dev.type == "cuda"
    if use_cuda:  # before anything is allocated, so that nothing lands on GPU 0 by default
        torch.cuda.set_device(dev)
    # a one-GPU torchrun job joins NCCL too (as official DINO and MoCo v3 do), so that the first GPU run exercises
    # the communicator's set-up; the gathers and DDP still take the single-process path (world size 1)
    under_torchrun = use_cuda and "TORCHELASTIC_RUN_ID" in os.environ
    if (world > 1 or under_torchrun) and not dist.is_initialized():
        # device_id binds the NCCL communicator to this process's GPU (created eagerly, no guess from the rank)
        dist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world,
                                timeout=timedelta(minutes=30), **({"device_id": dev} if use_cuda else {}))
    return DistEnv(rank=rank, world_size=world, local_rank=local, device=dev)


def shutdown() -> None:
    """Leave the process group (if one was joined)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


@torch.no_grad()
def all_gather_nograd(x: Tensor) -> Tensor:
    """Concatenation over ranks (rank order) along dim 0 of a tensor that needs no gradient (keys)."""
    if not is_distributed():
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def all_reduce_sum(x: Tensor) -> Tensor:
    """Sum over ranks (a new tensor; no gradient)."""
    if not is_distributed():
        return x
    out = x.detach().clone()
    dist.all_reduce(out)
    return out


def any_rank(flag: bool, device: torch.device) -> bool:
    """True when ``flag`` is True on any rank (used to stop every rank on a non-finite loss)."""
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    return bool(all_reduce_sum(t).item() > 0)


class GlobalBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d whose training statistics are those of the global batch (all ranks), with exact gradients."""

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and is_distributed()):
            return super().forward(x)
        channels = x.shape[1]
        xf = x.float()
        count = torch.full((1,), float(x.shape[0]), device=x.device)
        stats = dist_nn.all_reduce(torch.cat([xf.sum(0), (xf * xf).sum(0), count]))
        n = stats[-1]
        mean = stats[:channels] / n
        var = (stats[channels:2 * channels] / n - mean * mean).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * n / (n - 1).clamp_min(1), alpha=m)
        y = (xf - mean) * torch.rsqrt(var + self.eps)
        if self.affine:
            y = y * self.weight + self.bias
        return y.to(x.dtype)


def convert_global_bn(module: nn.Module, device: torch.device) -> nn.Module:
    """Replace every BatchNorm1d by its global-batch version: SyncBatchNorm on CUDA, GlobalBatchNorm1d on CPU."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm1d:
            new = GlobalBatchNorm1d(child.num_features, child.eps, child.momentum, child.affine,
                                    child.track_running_stats)
            new.load_state_dict(child.state_dict())
            if child.affine:  # the same Parameter objects (as convert_sync_batchnorm does): a frozen EMA copy's
                new.weight, new.bias = child.weight, child.bias  # BatchNorm stays frozen, out of the optimizer
            setattr(module, name, new)
        else:
            convert_global_bn(child, device)
    return module


def wrap_ddp(module: nn.Module, env: DistEnv) -> nn.Module:
    """DistributedDataParallel around the method on CUDA (identity when not distributed or on CPU).

    Buffers are not broadcast: BatchNorm statistics are global and the DINO centre is all-reduced, so every rank
    holds the same values already. On CPU (gloo) the global-batch BatchNorm all-reduces inside the backward pass,
    and DDP's asynchronous gradient buckets on the same gloo group interleave with it differently on each rank
    (measured: wrong gradients); CPU runs therefore average the gradients after the backward pass instead
    (:func:`average_gradients`), which is the same arithmetic without the overlap.
    """
    if not is_distributed() or env.device.type != "cuda":
        return module
    return nn.parallel.DistributedDataParallel(module, device_ids=[env.device.index], broadcast_buffers=False)


def average_gradients(module: nn.Module) -> None:
    """Average the gradients of ``module`` over the ranks in one flat all-reduce (no-op under DDP or one process)."""
    if not is_distributed() or isinstance(module, nn.parallel.DistributedDataParallel):
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


def barrier() -> None:
    if is_distributed():
        dist.barrier()
