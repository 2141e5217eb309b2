"""``python -m training.pretrain``: self-supervised pre-training of a ViT from a recipe.

Runs on one CPU, one GPU, or many processes under ``torchrun --nproc_per_node=N`` (DDP; gloo on CPU, NCCL on CUDA)
with the same global batch semantics. AMP (bf16 or fp16) on CUDA, fp32 on CPU. The run folder receives
``config.yaml`` (resolved), ``env.json``, ``log.csv`` and ``checkpoint.pt`` (atomic, every ``ckpt_every`` iterations
and at the end); ``--resume auto`` continues from it. A non-finite loss stops the run with a message naming the
step, leaving the last good checkpoint in place, and a non-zero exit status.

One iteration is one global batch of images; APS makes ``nsampling`` optimizer steps per iteration. Schedules
(lr, weight decay, EMA momentum) advance per optimizer step.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from sslzoo.errors import SslzooError
from sslzoo.notices import show_notices
from sslzoo.runlog import CsvLog, amp_dtype, autocast
from training import distributed
from training.checkpoint import CHECKPOINT_NAME, find_checkpoint, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from training.config import resolve
from training.data import ImageSet, ShardedBatches, load_split, step_generator, to_unit_float
from training.knn_monitor import KnnMonitor
from training.methods import Method, StepContext, build_method
from training.schedules import cosine, ema_momentum, param_groups, set_lr_wd, warmup_cosine

LOG_NAME = "log.csv"
_logger = logging.getLogger(__name__)


class NonFiniteLossError(SslzooError, FloatingPointError):
    """The loss became NaN or infinite; the run stopped and kept its last good checkpoint."""


@dataclass
class Trainer:
    """Everything one training process holds."""

    cfg: dict[str, Any]
    env: distributed.DistEnv
    method: Method
    model: torch.nn.Module  # the method, DDP-wrapped when distributed
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    data: ImageSet
    batches: ShardedBatches
    total_iters: int
    run_dir: Path
    monitor: KnnMonitor | None
    iteration: int = 0
    elapsed: float = 0.0
    last_knn: float | None = None
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


def build(cfg: dict[str, Any], env: distributed.DistEnv) -> Trainer:
    """Data, method, optimizer and monitor for a resolved config (fresh weights; see :func:`restore`)."""
    torch.manual_seed(cfg["seed"])
    data = load_split(cfg["data"], "train", limit=cfg["train_limit"], seed=cfg["seed"], cache_dir=cfg["cache_dir"])
    batches = ShardedBatches(len(data), cfg["batch_size"], seed=cfg["seed"], rank=env.rank,
                             world_size=env.world_size)
    ipe = batches.iters_per_epoch
    total_iters = int(cfg["steps"]) if cfg["steps"] else int(cfg["epochs"]) * ipe
    total_epochs = math.ceil(total_iters / ipe)
    method = build_method(cfg, num_images=len(data), total_epochs=total_epochs, device=env.device)
    method.train()
    opt = cfg["optim"]
    optimizer = torch.optim.AdamW(param_groups(method, decay_all=opt["decay_all"]), lr=0.0,
                                  betas=tuple(opt["betas"]), weight_decay=opt["weight_decay"])
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype(env.device, cfg["amp"]) == torch.float16)
    monitor = None
    log = cfg["log"]
    if env.is_main and (log["knn_every_epochs"] or log["knn_every_steps"]):
        bank = data.subset(torch.randperm(len(data), generator=torch.Generator().manual_seed(cfg["seed"] + 1))
                           [:log["knn_bank"]])
        monitor = KnnMonitor(bank, load_split(cfg["data"], log["knn_split"], limit=log["knn_queries"],
                                              seed=cfg["seed"], cache_dir=cfg["cache_dir"]), k=log["knn_k"])
    return Trainer(cfg=cfg, env=env, method=method, model=distributed.wrap_ddp(method, env), optimizer=optimizer,
                   scaler=scaler, data=data, batches=batches, total_iters=total_iters, run_dir=Path(cfg["output"]),
                   monitor=monitor)


def state(tr: Trainer) -> dict[str, Any]:
    """The full training state (see training/checkpoint.py)."""
    return {"method": tr.method.state_dict(), "extra": tr.method.extra_state(),
            "optimizer": tr.optimizer.state_dict(), "scaler": tr.scaler.state_dict(), "iteration": tr.iteration,
            "epoch": tr.iteration // tr.batches.iters_per_epoch,
            "iters_per_epoch": tr.batches.iters_per_epoch, "elapsed": tr.elapsed, "rng": rng_state(),
            "method_name": tr.cfg["method"], "world_size": tr.env.world_size}


def restore(tr: Trainer, path: Path) -> None:
    """Continue from a checkpoint."""
    ckpt = load_checkpoint(path, map_location=tr.env.device)
    if ckpt["method_name"] != tr.cfg["method"]:
        raise SslzooError(f"{path} was written by a {ckpt['method_name']} run, not {tr.cfg['method']}; "
                          "resume with the same recipe or choose another --output.")
    tr.method.load_state_dict(ckpt["method"])
    tr.method.load_extra_state(ckpt["extra"])
    tr.optimizer.load_state_dict(ckpt["optimizer"])
    tr.scaler.load_state_dict(ckpt["scaler"])
    tr.iteration, tr.elapsed = int(ckpt["iteration"]), float(ckpt["elapsed"])
    set_rng_state({k: (v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in ckpt["rng"].items()})


def write_checkpoint(tr: Trainer) -> None:
    if tr.env.is_main:
        save_checkpoint(tr.run_dir / CHECKPOINT_NAME, state(tr))
    distributed.barrier()


def clip(tr: Trainer) -> None:
    opt = tr.cfg["optim"]
    if not opt["clip_grad"]:
        return
    params = [p for p in tr.method.parameters() if p.grad is not None]
    if opt["clip_mode"] == "per_param":  # DINO's clip_gradients: every parameter's gradient norm separately
        for p in params:
            norm = p.grad.norm(2)
            p.grad.mul_(torch.clamp(opt["clip_grad"] / (norm + 1e-6), max=1.0))
    else:
        torch.nn.utils.clip_grad_norm_(params, opt["clip_grad"])


def mean_over_ranks(terms: dict[str, torch.Tensor]) -> dict[str, float]:
    """The loss terms averaged over the ranks: the global-batch values that one process would log."""
    values = torch.stack([v.detach().float() for v in terms.values()])
    values = distributed.all_reduce_sum(values) / distributed.world_size()
    return dict(zip(terms, values.tolist()))


def train_iteration(tr: Trainer) -> dict[str, float]:
    """One global batch: views, then ``substeps`` optimizer steps. Returns the mean of each loss term."""
    cfg, env, method = tr.cfg, tr.env, tr.method
    epoch, i = divmod(tr.iteration, tr.batches.iters_per_epoch)
    indices = tr.batches.global_indices(epoch, i)
    generator = step_generator(cfg["seed"], tr.iteration, env.device)
    images = to_unit_float(tr.data.images[indices], env.device)
    with torch.no_grad():
        views = method.views(images, indices.to(env.device), generator, epoch)
    local = {k: v[tr.batches.local] for k, v in views.items()}
    ctx = StepContext(epoch=epoch, generator=generator)
    opt = cfg["optim"]
    peak = opt["base_lr"] * cfg["batch_size"] / 256
    wd_end = opt["weight_decay"] if opt["weight_decay_end"] is None else opt["weight_decay_end"]
    warmup = opt["warmup_epochs"] * tr.steps_per_epoch
    ema_base = method.ema_base()
    sums: dict[str, float] = {}
    for sub in range(method.substeps):
        step = tr.iteration * method.substeps + sub
        lr = warmup_cosine(step, tr.total_steps, warmup, peak, opt["min_lr"])
        wd = cosine(step, tr.total_steps, opt["weight_decay"], wd_end)
        set_lr_wd(tr.optimizer, lr, wd)
        m = ema_momentum(step, tr.total_steps, ema_base) if ema_base is not None else None
        if m is not None and not method.ema_after_step:
            method.update_ema(m)
        with tr.autocast():
            terms = tr.model(local, sub, ctx)
        loss = terms["loss"]
        if distributed.any_rank(not bool(torch.isfinite(loss.detach())), env.device):
            raise NonFiniteLossError(
                f"the loss is not finite at iteration {tr.iteration} (optimizer step {step}, epoch {epoch}); "
                f"the run stopped. The last good checkpoint is kept in {tr.run_dir}. Lower the learning rate "
                "(--lr), enable gradient clipping (--set optim.clip_grad=3.0) or use fp32 (--set amp=none), "
                "then resume with --resume auto.")
        tr.optimizer.zero_grad(set_to_none=True)
        tr.scaler.scale(loss).backward()
        distributed.average_gradients(tr.model)
        tr.scaler.unscale_(tr.optimizer)
        method.after_backward(epoch)
        clip(tr)
        tr.scaler.step(tr.optimizer)
        tr.scaler.update()
        if m is not None and method.ema_after_step:
            method.update_ema(m)
        for k, v in mean_over_ranks(terms).items():
            sums[k] = sums.get(k, 0.0) + v
        sums.update(lr=lr, wd=wd, momentum=m if m is not None else float("nan"))
    return {k: (v / method.substeps if k not in ("lr", "wd", "momentum") else v) for k, v in sums.items()}


def _knn_due(tr: Trainer) -> bool:
    log, it = tr.cfg["log"], tr.iteration
    ipe = tr.batches.iters_per_epoch
    by_steps = log["knn_every_steps"] and it % log["knn_every_steps"] == 0
    by_epochs = log["knn_every_epochs"] and it % ipe == 0 and (it // ipe) % log["knn_every_epochs"] == 0
    return bool(tr.monitor is not None and (by_steps or by_epochs or it == tr.total_iters))


def measure_knn(tr: Trainer) -> float | None:
    """The monitor's kNN top-1 of the evaluated encoder, or None after a failure, which is reported, never fatal."""
    backbone = tr.method.eval_backbone()
    try:
        knn = tr.monitor(backbone, tr.method.eval_data_config(backbone), tr.env.device)
    except Exception as e:  # noqa: BLE001 - a monitoring problem must never end a training run
        _logger.warning("kNN monitor failed at iteration %d (%s: %s); training goes on without it, and the run's"
                        " checkpoint is unaffected.", tr.iteration, type(e).__name__, (str(e).splitlines() or [""])[0])
        tr.monitor = None
        return None
    tr.last_knn = knn
    return knn


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


def fit(tr: Trainer, *, stop_at: int | None = None) -> Trainer:
    """Train from ``tr.iteration`` to the end (or to ``stop_at``, as a simulated kill after its checkpoint)."""
    cfg, env = tr.cfg, tr.env
    log = CsvLog(tr.run_dir / LOG_NAME) if env.is_main else None
    bar = None
    if env.is_main and cfg["log"]["progress"]:
        from tqdm import tqdm

        bar = tqdm(total=tr.total_iters, initial=tr.iteration, desc=cfg["method"], dynamic_ncols=True)
    window_start, window_images, window = time.perf_counter(), 0, {}
    tr.method.train()
    while tr.iteration < tr.total_iters:
        started = time.perf_counter()
        terms = train_iteration(tr)
        tr.iteration += 1
        tr.elapsed += time.perf_counter() - started
        window_images += cfg["batch_size"]
        for k, v in terms.items():
            window[k] = window.get(k, 0.0) + v if k not in ("lr", "wd", "momentum") else v
        window["_n"] = window.get("_n", 0) + 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{terms['loss']:.4f}", lr=f"{terms['lr']:.2e}")
        ipe = tr.batches.iters_per_epoch
        if tr.iteration % ipe == 0:
            tr.method.end_of_epoch(tr.iteration // ipe - 1, tr.data.images, env.device)
        # the checkpoint comes before monitoring, so that nothing the monitor does can lose trained iterations
        if tr.iteration % cfg["ckpt_every"] == 0 or tr.iteration == tr.total_iters:
            write_checkpoint(tr)
        knn = measure_knn(tr) if _knn_due(tr) else None
        if log is not None and (tr.iteration % cfg["log"]["every"] == 0 or tr.iteration == tr.total_iters or knn):
            n = window.pop("_n")
            seconds = time.perf_counter() - window_start
            row = {"iteration": tr.iteration, "step": tr.iteration * tr.method.substeps,
                   "epoch": round(tr.iteration / tr.batches.iters_per_epoch, 4)}
            row.update({k: (v / n if k not in ("lr", "wd", "momentum") else v) for k, v in window.items()})
            row.update(images_per_s=window_images / max(seconds, 1e-9), knn_top1=knn if knn is not None else "",
                       elapsed_s=round(tr.elapsed, 3))
            log.write(row)
            window_start, window_images, window = time.perf_counter(), 0, {}
        if stop_at is not None and tr.iteration >= stop_at:
            break
    if bar is not None:
        bar.close()
    return tr


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


def main(argv: list[str] | None = None) -> int:
    show_notices()
    show_notices("training", "training")
    try:
        cfg = resolve(argv)
        tr = train(cfg)
        if tr.env.is_main:
            print(f"done: {tr.iteration} iterations in {tr.elapsed:.1f} s; run folder {tr.run_dir}")
        return 0
    except NonFiniteLossError as e:  # the run itself failed; its last good checkpoint is kept
        print(f"error: {e}", file=sys.stderr)
        return 1
    except SslzooError as e:  # the recipe, a flag, the data or the run folder: the user can fix it
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    sys.exit(main())
