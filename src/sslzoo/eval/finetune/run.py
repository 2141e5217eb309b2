"""Full fine-tuning of a ViT on an ImageFolder dataset with the papers' timm recipe (protocol ``finetune:<recipe>``).

Every piece of the recipe is timm's own: ``create_optimizer_v2`` (AdamW, layer-wise lr decay, no weight decay on
1-D parameters and ``no_weight_decay()`` names), ``CosineLRScheduler`` (linear warm-up, then cosine), ``Mixup``
(mixup/cutmix with label smoothing), ``SoftTargetCrossEntropy``/``LabelSmoothingCrossEntropy`` and
``create_transform`` (RandAugment, random erasing). The schedule is stepped per iteration, as in BEiT and iBOT/ADCLR
(DeiT-derived scripts step timm's scheduler once per epoch instead).

Randomness is reseeded at the start of every epoch from ``(seed, epoch)`` (python, numpy and torch, which drive
RandAugment, Mixup/CutMix, random erasing, shuffling and drop path), so a run resumed from ``checkpoint.pt`` after
epoch k draws exactly what an uninterrupted run draws: on CPU the final weights are bitwise equal.

The output folder is a hub folder (:func:`sslzoo.save_pretrained`) holding the last epoch's weights with the
classifier head, plus ``checkpoint.pt``, ``log.csv`` and ``results.json``. The papers report the best test accuracy
over epochs; ``results.json`` and the model card give both ``best_top1`` (with its epoch) and ``last_top1``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import time
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np
import torch
from timm.data import (
    Mixup,
    resolve_model_data_config,
)
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .. import data as sslzoo_data
from ..files import load_checkpoint, save_torch_atomic, write_text_atomic
from ..hub_folder import save_pretrained
from ..models import create_model
from ..runlog import CsvLog, amp_dtype as amp_dtype_for, autocast, differing_settings, resolve_device
from .finetune_card import card_fields, describe_finetuned
from .finetune_data import Mapped, image_size, open_splits, prepare_model_config, subset, train_transform
from .finetune_recipes import (FinetuneError, FinetuneRecipe, check_finetune_options,
                               resolve_recipe)  # noqa: F401 - resolve_recipe: re-exported

_logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "log.csv"
RESULTS_NAME = "results.json"
CHECKPOINT_FORMAT = "sslzoo-finetune-v1"
_LOG_COLUMNS = ("epoch", "lr", "train_loss", "test_top1", "best_top1", "epoch_s")


# --------------------------------------------------------------------------------------------------- training pieces


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


def _criterion_and_mixup(recipe: FinetuneRecipe, num_classes: int) -> tuple[torch.nn.Module, Optional[Callable]]:
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


def _seed_epoch(seed: int, epoch: int) -> None:
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


def _train_epoch(
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


# --------------------------------------------------------------------------------------------------- checkpoints


def _load_checkpoint(path: Path, run: dict[str, Any]) -> dict[str, Any]:
    """Read ``checkpoint.pt`` (tensors and plain data only) and check that it belongs to the same run."""
    state = load_checkpoint(path)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise FinetuneError(f"{path} is not an sslzoo fine-tuning checkpoint. Choose another --output folder.")
    detail = differing_settings(run, state["run"])
    if detail:
        raise FinetuneError(
            f"Cannot resume {path}: the run differs from the one that wrote it ({detail}). Resume with the same"
            " settings, or start the new run in another --output folder."
        )
    return state


def default_num_workers() -> int:
    """DataLoader workers: the cores this process may use, at most 4 (more than the cores only adds contention)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return min(4, cores)


# --------------------------------------------------------------------------------------------------- the protocol


def finetune(
    model_name: str,
    data: Union[str, os.PathLike],
    *,
    output: Union[str, os.PathLike],
    recipe: str = "default",
    resume: bool = False,
    seed: int = 0,
    device: str = "auto",
    num_workers: Optional[int] = None,
    limit_train: Optional[int] = None,
    limit_test: Optional[int] = None,
    max_steps_per_epoch: Optional[int] = None,
    pretrained: bool = True,
    pretrained_file: Optional[Union[str, os.PathLike]] = None,
    amp: bool = True,
    progress: bool = True,
    **recipe_overrides: Any,
) -> dict[str, Any]:
    """Fine-tune a ViT with a classifier head on a dataset and write the result as a hub folder.

    Args:
        model_name: anything :func:`sslzoo.create_model` takes (registry name, alias, ``local-dir:``, timm name).
        data: an ImageFolder tree with ``train/`` and ``test/`` (or ``val/``), or any dataset
            :func:`sslzoo.data.open_dataset` reads. Accuracy is measured on the test split after every epoch.
        output: the run folder: ``checkpoint.pt`` and ``log.csv`` during training; at the end also the hub folder
            (``model.safetensors``, ``config.json``, ``README.md``) and ``results.json``.
        recipe: a preset of :data:`FINETUNE_RECIPES`.
        resume: continue the run in ``output`` from its ``checkpoint.pt`` (a fresh start where there is none).
        seed: seeds the head's initialisation, the ``limit_*`` subsets and every epoch's randomness.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``. Mixed precision only on CUDA.
        num_workers: DataLoader workers; None: as many as this process may use cores, at most 4.
        limit_train, limit_test: use a seeded random subset of this many images (quick runs).
        max_steps_per_epoch: cap on the optimizer steps of an epoch (quick runs); the schedule follows the cap.
        pretrained, pretrained_file: passed to :func:`sslzoo.create_model` (False trains from scratch).
        amp: mixed precision on CUDA (bf16 where supported, else fp16 with loss scaling).
        progress: show a progress bar per epoch.
        **recipe_overrides: fields of :class:`FinetuneRecipe` (``epochs``, ``batch_size``, ``lr``, ``base_lr``,
            ``layer_decay``, ``mixup``...), as in :func:`resolve_recipe`.

    Returns:
        The content of ``results.json`` (``best_top1``, ``best_epoch``, ``last_top1``, ``lr``, ``recipe``...) plus
        ``model``: the fine-tuned model (last epoch), in eval mode.

    Raises:
        FinetuneError: invalid recipe values, a dataset with fewer images than a batch, an existing run in
            ``output`` without ``resume``, or a checkpoint of a different run.
        sslzoo.data.DatasetNotFoundError: no such dataset folder or split.
        sslzoo.data.ClassesError: fewer than two classes in train, or test classes without training images.
    """
    rec = check_finetune_options(recipe, num_workers=num_workers, limit_train=limit_train, limit_test=limit_test,
                                 max_steps_per_epoch=max_steps_per_epoch, **recipe_overrides)
    out = Path(output).expanduser()
    ckpt_path = out / CHECKPOINT_NAME
    if ckpt_path.is_file() and not resume:
        raise FinetuneError(
            f"{out} already holds a fine-tuning run ({CHECKPOINT_NAME}). Pass --resume (resume=True) to continue it,"
            " or choose another --output folder."
        )
    dev = resolve_device(device)
    train_base, test_base, classes = open_splits(data)
    train_set, test_set = subset(train_base, limit_train, seed), subset(test_base, limit_test, seed + 1)

    torch.manual_seed(seed)  # the new head's initialisation
    model = create_model(
        model_name, pretrained=pretrained, pretrained_file=pretrained_file, num_classes=len(classes),
        drop_path_rate=rec.drop_path,
    )
    prepare_model_config(model, rec, classes)
    train_ds = Mapped(train_set, train_transform(rec, resolve_model_data_config(model), image_size(train_base)))
    test_ds = Mapped(test_set, sslzoo_data.eval_transform(model))
    steps_per_epoch = len(train_ds) // rec.batch_size
    if steps_per_epoch == 0:
        raise FinetuneError(
            f"The training split has {len(train_ds)} images, fewer than one batch of {rec.batch_size}."
            " Lower --batch-size (even, for mixup/cutmix) or raise --limit-train."
        )
    if max_steps_per_epoch is not None:
        steps_per_epoch = max(1, min(steps_per_epoch, max_steps_per_epoch))

    lr = rec.lr_for(model.embed_dim)
    model.to(dev)
    optimizer = build_optimizer(model, rec, lr)
    scheduler = build_scheduler(optimizer, rec, lr, steps_per_epoch)
    criterion, mixup = _criterion_and_mixup(rec, len(classes))
    amp_dtype = amp_dtype_for(dev, amp)
    scaler = torch.amp.GradScaler(dev.type, enabled=amp_dtype == torch.float16)

    # what must be equal for a checkpoint to continue this run
    run = dict(
        model=model_name, data=str(data), recipe=recipe, recipe_config=rec.to_dict(), seed=seed,
        limit_train=limit_train, limit_test=limit_test, steps_per_epoch=steps_per_epoch, classes=classes,
        pretrained=pretrained, pretrained_file=str(pretrained_file) if pretrained_file else None,
    )
    start_epoch, best_top1, best_epoch, history, train_s = 0, -1.0, 0, [], 0.0
    if resume and ckpt_path.is_file():
        state = _load_checkpoint(ckpt_path, run)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler.is_enabled() and state["scaler"]:
            scaler.load_state_dict(state["scaler"])
        start_epoch, best_top1, best_epoch = state["epoch"], state["best_top1"], state["best_epoch"]
        history, train_s = list(state["history"]), state["train_s"]
        _logger.info("Resuming %s after epoch %d of %d.", out, start_epoch, rec.epochs)
    out.mkdir(parents=True, exist_ok=True)
    log = CsvLog(out / LOG_NAME, columns=_LOG_COLUMNS)
    log.replace(history)  # the checkpoint's history is the log up to where the run continues

    workers = default_num_workers() if num_workers is None else num_workers
    loader_args = dict(batch_size=rec.batch_size, num_workers=workers, pin_memory=dev.type == "cuda")
    train_loader = DataLoader(train_ds, shuffle=True, drop_last=True, **loader_args)
    test_loader = DataLoader(test_ds, shuffle=False, **loader_args)
    for epoch in range(start_epoch, rec.epochs):
        t0 = time.perf_counter()
        _seed_epoch(seed, epoch)
        loss = _train_epoch(
            model, train_loader, optimizer=optimizer, scheduler=scheduler, scaler=scaler, criterion=criterion,
            mixup=mixup, device=dev, amp_dtype=amp_dtype, steps=steps_per_epoch, first_update=epoch * steps_per_epoch,
            desc=f"epoch {epoch + 1}/{rec.epochs}", progress=progress,
        )
        top1 = evaluate(model, test_loader, dev, amp_dtype)
        if top1 > best_top1:
            best_top1, best_epoch = top1, epoch + 1
        epoch_s = time.perf_counter() - t0
        train_s += epoch_s
        history.append(dict(
            epoch=epoch + 1, lr=max(g["lr"] for g in optimizer.param_groups), train_loss=loss, test_top1=top1,
            best_top1=best_top1, epoch_s=round(epoch_s, 3),
        ))
        save_torch_atomic(dict(
            format=CHECKPOINT_FORMAT, run=run, epoch=epoch + 1, model=model.state_dict(),
            optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(), scaler=scaler.state_dict(),
            best_top1=best_top1, best_epoch=best_epoch, history=history, train_s=train_s,
        ), ckpt_path)
        log.write(history[-1])
        _logger.info("epoch %d/%d: loss %.4f, test top-1 %.2f (best %.2f)", epoch + 1, rec.epochs, loss, top1, best_top1)

    ran = dataclasses.replace(rec, warmup_epochs=warmup_run(rec, scheduler, steps_per_epoch))  # what the run used
    results = dict(
        protocol=f"finetune:{recipe}", model=model_name, data=str(data), recipe=recipe, recipe_config=ran.to_dict(),
        recipe_warmup_epochs=rec.warmup_epochs,
        epochs=rec.epochs, lr=lr, best_top1=best_top1, best_epoch=best_epoch, last_top1=history[-1]["test_top1"],
        num_classes=len(classes), classes=classes, train_images=len(train_ds), test_images=len(test_ds),
        steps_per_epoch=steps_per_epoch, seed=seed, device=str(dev), train_wall_clock_s=round(train_s, 3),
    )
    dataset_name = Path(str(data)).name or str(data)
    describe_finetuned(model, out.name, model_name, dataset_name, results)
    card = card_fields(model_name=model_name, dataset_name=dataset_name, recipe_name=recipe, recipe=ran, results=results)
    save_pretrained(model, out, card=card)
    write_text_atomic(out / RESULTS_NAME, json.dumps(results, indent=2) + "\n")
    return dict(results, model=model.eval())

