"""The pieces of a fine-tuning epoch, all timm's own: the optimizer, the schedule, the loss and mixup, one epoch of
training, evaluation, and the per-epoch seeding that makes a resumed run draw what an uninterrupted one draws.
"""

from __future__ import annotations

import logging
import os
import random
from typing import Any, Callable, Optional

import numpy as np
import torch
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ...runlog import autocast
from .recipes import FinetuneError, FinetuneRecipe

_logger = logging.getLogger(__name__)


def build_optimizer(model: torch.nn.Module, recipe: FinetuneRecipe, lr: float) -> torch.optim.Optimizer:
    """AdamW through timm: layer-wise lr scales (``lr_scale`` per group) and no weight decay on 1-D parameters."""
    return create_optimizer_v2(
        model, opt="adamw", lr=lr, weight_decay=recipe.weight_decay, layer_decay=recipe.layer_decay
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer, recipe: FinetuneRecipe, lr: float, steps_per_epoch: int
) -> CosineLRScheduler:
    """Per-iteration linear warm-up from ``warmup_lr``, then cosine from ``lr`` to ``min_lr`` (timm's scheduler)."""
    total = recipe.epochs * steps_per_epoch
    warmup = min(round(recipe.warmup_epochs * steps_per_epoch), total)
    if recipe.warmup_epochs > recipe.epochs:
        _logger.warning(
            "warm-up (%g epochs) is longer than the run (%d epochs): the lr warms up for the whole run and never"
            " reaches its cosine; pass --warmup-epochs to shorten it.", recipe.warmup_epochs, recipe.epochs
        )
    timm_logger = logging.getLogger(CosineLRScheduler.__module__)
    timm_logger.addFilter(_one_step_cosine_notice)
    try:
        return CosineLRScheduler(
            optimizer,
            t_initial=max(1, total - warmup),
            lr_min=recipe.min_lr,
            warmup_t=warmup,
            warmup_lr_init=recipe.warmup_lr,
            warmup_prefix=True,  # the cosine starts after the warm-up, as in BEiT's cosine_scheduler
            t_in_epochs=False,
        )
    finally:
        timm_logger.removeFilter(_one_step_cosine_notice)


def _one_step_cosine_notice(record: logging.LogRecord) -> bool:
    """Drop timm's "Cosine annealing scheduler will have no effect" notice, and only it: a cosine of at most one
    step after a warm-up that fills the run is what a short run asks for (the warning above says so in our words)."""
    return not record.getMessage().startswith("Cosine annealing scheduler will have no effect")


def warmup_run(recipe: FinetuneRecipe, scheduler: CosineLRScheduler, steps_per_epoch: int) -> float:
    """The warm-up that the schedule runs, in epochs: the recipe's, unless the run is too short to hold it."""
    if scheduler.warmup_t == round(recipe.warmup_epochs * steps_per_epoch):
        return recipe.warmup_epochs
    return round(scheduler.warmup_t / steps_per_epoch, 4)


def criterion_and_mixup(recipe: FinetuneRecipe, num_classes: int) -> tuple[torch.nn.Module, Optional[Callable]]:
    if recipe.mixup_active:  # Mixup builds the smoothed soft targets itself
        mixup = Mixup(
            mixup_alpha=recipe.mixup,
            cutmix_alpha=recipe.cutmix,
            prob=recipe.mixup_prob,
            switch_prob=recipe.mixup_switch_prob,
            mode="batch",
            label_smoothing=recipe.smoothing,
            num_classes=num_classes,
        )
        return SoftTargetCrossEntropy(), mixup
    if recipe.smoothing > 0:
        return LabelSmoothingCrossEntropy(smoothing=recipe.smoothing), None
    return torch.nn.CrossEntropyLoss(), None


def seed_epoch(seed: int, epoch: int) -> None:
    """Seed python, numpy and torch (all devices) from ``(seed, epoch)``: each epoch's draws depend on nothing else."""
    s = int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, loader: DataLoader, device: torch.device, amp_dtype: Optional[torch.dtype] = None
) -> float:
    """Top-1 accuracy (percent) of ``model`` on ``loader``."""
    model.eval()
    correct = total = 0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast(device, amp_dtype):
            logits = model(x)
        correct += int((logits.argmax(dim=-1) == y).sum())
        total += len(y)
    return 100.0 * correct / max(total, 1)


def train_epoch(
    model: torch.nn.Module,
    loader: DataLoader,
    *,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    criterion: torch.nn.Module,
    mixup: Optional[Callable],
    device: torch.device,
    amp_dtype: Optional[torch.dtype],
    steps: int,
    first_update: int,
    desc: str,
    progress: bool,
) -> float:
    """One epoch of ``steps`` optimizer steps; returns the mean training loss."""
    model.train()
    total, seen = 0.0, 0
    bar = tqdm(total=steps, desc=desc, disable=not progress, leave=False, dynamic_ncols=True)
    for step, (x, y) in enumerate(loader):
        if step >= steps:
            break
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        target = y
        if mixup is not None:
            x, target = mixup(x, y)
        with autocast(device, amp_dtype):
            loss = criterion(model(x), target)
        if not torch.isfinite(loss):
            raise FinetuneError(
                f"The training loss became {loss.item()} at step {step + 1} ({desc}). Lower the learning rate"
                " (--lr or --base-lr) or increase --warmup-epochs, then start again in a new --output folder."
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step_update(first_update + step + 1)
        total += loss.item()
        seen += 1
        bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{optimizer.param_groups[-1]['lr']:.2e}", refresh=False)
        bar.update()
    bar.close()
    return total / max(seen, 1)


def default_num_workers() -> int:
    """DataLoader workers: the cores this process may use, at most 4 (more than the cores only adds contention)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return min(4, cores)
