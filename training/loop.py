"""The training loop: one iteration (a global batch, ``substeps`` optimizer steps, ``accum_steps`` micro-batches each)
and the run from the current iteration to the end, with checkpoints, the kNN monitor and the log.

One iteration is one global batch of images; APS makes ``nsampling`` optimizer steps per iteration. Schedules
(lr, weight decay, EMA momentum) advance per optimizer step. With ``accum_steps`` = A, each optimizer step runs the
rank's batch as A equal micro-batches and sums their gradients (each loss divided by A); the loss state (DINO
centres) is updated once per step with the whole batch; what a micro-batch changes is said in training/README.
"""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext

import torch

from sslzoo.errors import SslzooError
from sslzoo.runlog import CsvLog
from . import distributed
from .data import CropBatch, step_generator
from .errors import UnreadableImageError
from .methods import StepContext
from .schedules import cosine, ema_momentum, set_lr_wd, warmup_cosine
from .tensorboard_log import TensorBoardLog
from .trainer import Trainer, write_checkpoint
from .views.sample_draws import PHOTOMETRIC, SampleDraws, sample_keys

LOG_NAME = "log.csv"
# the schedule values of a step: a log row reports the latest, where the loss terms are averaged
SCHEDULE_KEYS = ("lr", "wd", "momentum")
_logger = logging.getLogger("training")


class NonFiniteLossError(SslzooError, FloatingPointError):
    """The loss became NaN or infinite; the run stopped and kept its last good checkpoint."""


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


def micro_batches(inputs: dict[str, torch.Tensor], parts: int) -> list[dict[str, torch.Tensor]]:
    """The rank's inputs cut into ``parts`` equal micro-batches along the batch dimension."""
    if parts == 1:
        return [inputs]
    chunks = {k: v.chunk(parts) for k, v in inputs.items()}
    return [{k: c[i] for k, c in chunks.items()} for i in range(parts)]


def check_replaced(tr: Trainer, batch: CropBatch) -> None:
    """Log (or, with ``--strict-data``, refuse) the unreadable files a batch replaced (streamed or in memory)."""
    for bad in batch.replaced:
        if tr.cfg["strict_data"]:
            raise UnreadableImageError(f"cannot decode the training image {bad}; remove or replace the file, or "
                                       "drop --strict-data to replace unreadable images and go on.")
        _logger.warning("unreadable training image %s: replaced by the next readable file", bad)
    tr.replaced_images += len(batch.replaced)


def train_iteration(tr: Trainer, batch: CropBatch) -> dict[str, float]:
    """One global batch: views, then ``substeps`` optimizer steps. Returns the mean of each loss term."""
    cfg, env, method = tr.cfg, tr.env, tr.method
    epoch = tr.iteration // tr.batches.iters_per_epoch
    check_replaced(tr, batch)
    draws = SampleDraws(sample_keys(cfg["seed"], epoch, batch.indices, PHOTOMETRIC).to(env.device))
    with torch.no_grad():
        local = method.finish_views(batch.crops, batch.geometry, draws, epoch)
    ctx = StepContext(epoch=epoch, generator=step_generator(cfg["seed"], tr.iteration, env.device))
    parts = micro_batches(local, cfg["accum_steps"])
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
        tr.optimizer.zero_grad(set_to_none=True)
        step_terms: dict[str, torch.Tensor] = {}
        with method.pooled_updates():
            for k, part in enumerate(parts):
                # under DDP only the last micro-batch all-reduces the summed gradients
                sync = nullcontext() if k == len(parts) - 1 or not hasattr(tr.model, "no_sync") else tr.model.no_sync()
                with sync:
                    with tr.autocast():
                        terms = tr.model(part, sub, ctx)
                    loss = terms["loss"]
                    if distributed.any_rank(not bool(torch.isfinite(loss.detach())), env.device):
                        raise NonFiniteLossError(
                            f"the loss is not finite at iteration {tr.iteration} (optimizer step {step}, epoch "
                            f"{epoch}); the run stopped. The last good checkpoint is kept in {tr.run_dir}. Lower the "
                            "learning rate (--lr), enable gradient clipping (--set optim.clip_grad=3.0) or use fp32 "
                            "(--set amp=none), then resume with --resume auto.")
                    tr.scaler.scale(loss / len(parts)).backward()
                for name, value in terms.items():
                    step_terms[name] = step_terms.get(name, 0) + value.detach() / len(parts)
        distributed.average_gradients(tr.model)
        tr.scaler.unscale_(tr.optimizer)
        method.after_backward(epoch)
        clip(tr)
        tr.scaler.step(tr.optimizer)
        tr.scaler.update()
        if m is not None and method.ema_after_step:
            method.update_ema(m)
        for k, v in mean_over_ranks(step_terms).items():
            sums[k] = sums.get(k, 0.0) + v
        sums.update(lr=lr, wd=wd, momentum=m if m is not None else float("nan"))
    return {k: (v / method.substeps if k not in SCHEDULE_KEYS else v) for k, v in sums.items()}


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


class _Window:
    """The log row's averages since the last row."""

    def __init__(self) -> None:
        self.start, self.images, self.sums, self.n = time.perf_counter(), 0, {}, 0

    def add(self, terms: dict[str, float], images: int) -> None:
        self.images += images
        self.n += 1
        for k, v in terms.items():
            self.sums[k] = self.sums.get(k, 0.0) + v if k not in SCHEDULE_KEYS else v

    def row(self) -> dict[str, float]:
        seconds = time.perf_counter() - self.start
        out = {k: (v / self.n if k not in SCHEDULE_KEYS else v) for k, v in self.sums.items()}
        return dict(out, images_per_s=self.images / max(seconds, 1e-9))


def fit(tr: Trainer, *, stop_at: int | None = None) -> Trainer:
    """Train from ``tr.iteration`` to the end (or to ``stop_at``, as a simulated kill after its checkpoint)."""
    cfg, env = tr.cfg, tr.env
    log = CsvLog(tr.run_dir / LOG_NAME) if env.is_main else None
    events = TensorBoardLog(tr.run_dir, start_iteration=tr.iteration) if env.is_main and cfg["log"]["tensorboard"] \
        else None
    bar = None
    if env.is_main and cfg["log"]["progress"]:
        from tqdm import tqdm

        # tqdm shows the elapsed time, the ETA and iterations/s; the postfix adds the images/s of the last row
        bar = tqdm(total=tr.total_iters, initial=tr.iteration, desc=cfg["method"], unit="it", dynamic_ncols=True)
    window = _Window()
    tr.method.train()
    ipe = tr.batches.iters_per_epoch
    stopped = False
    mark = time.perf_counter()
    while tr.iteration < tr.total_iters and not stopped:
        epoch, start = divmod(tr.iteration, ipe)
        for batch in tr.source.epoch_batches(epoch, start):
            started = time.perf_counter()
            terms = train_iteration(tr, batch)
            tr.iteration += 1
            now = time.perf_counter()
            tr.elapsed += now - started
            tr.wall_clock, mark = tr.wall_clock + now - mark, now  # the checkpoint below records both
            window.add(terms, cfg["batch_size"])
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{terms['loss']:.4f}", lr=f"{terms['lr']:.2e}",
                                img_s=f"{window.images / max(time.perf_counter() - window.start, 1e-9):.1f}")
            if tr.iteration % ipe == 0:
                tr.method.end_of_epoch(tr.iteration // ipe - 1, tr.source.eval_images, env.device)
            # the checkpoint comes before monitoring, so that nothing the monitor does can lose trained iterations
            if tr.iteration % cfg["ckpt_every"] == 0 or tr.iteration == tr.total_iters:
                write_checkpoint(tr)
            knn = measure_knn(tr) if _knn_due(tr) else None
            if log is not None and (tr.iteration % cfg["log"]["every"] == 0 or tr.iteration == tr.total_iters or knn):
                row = {"iteration": tr.iteration, "step": tr.iteration * tr.method.substeps,
                       "epoch": round(tr.iteration / ipe, 4)}
                row.update(window.row())
                row.update(knn_top1=knn if knn is not None else "", elapsed_s=round(tr.elapsed, 3),
                           replaced_images=tr.replaced_images)
                if env.device.type == "cuda":
                    row["gpu_mem_gib"] = round(torch.cuda.max_memory_allocated(env.device) / 2**30, 3)
                    torch.cuda.reset_peak_memory_stats(env.device)
                log.write(row)
                if events is not None:
                    events.write(row)
                window = _Window()
            if tr.iteration >= tr.total_iters or (stop_at is not None and tr.iteration >= stop_at):
                stopped = stop_at is not None and tr.iteration >= stop_at
                break
    if bar is not None:
        bar.close()
    if events is not None:
        events.close()
    return tr
