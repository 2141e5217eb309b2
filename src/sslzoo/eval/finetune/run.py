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
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

import torch
from timm.data import resolve_model_data_config
from torch.utils.data import DataLoader

from ... import data as sslzoo_data
from ...files import load_checkpoint, save_torch_atomic, write_text_atomic
from ...weights.hub_folder import save_pretrained
from ...models import create_model
from ...runlog import CsvLog, amp_dtype as amp_dtype_for, differing_settings, resolve_device
from .card import card_fields, describe_finetuned
from .data import Mapped, image_size, open_splits, prepare_model_config, subset, train_transform
from .loop import (build_optimizer, build_scheduler, criterion_and_mixup, default_num_workers, evaluate, seed_epoch,
                   train_epoch, warmup_run)
from .recipes import FinetuneError, FinetuneRecipe, check_finetune_options

_logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "log.csv"
RESULTS_NAME = "results.json"
CHECKPOINT_FORMAT = "sslzoo-finetune-v1"
_LOG_COLUMNS = ("epoch", "lr", "train_loss", "test_top1", "best_top1", "epoch_s")


@dataclass
class Progress:
    """What ``checkpoint.pt`` carries from one epoch to the next besides the weights and the optimizer: the epochs
    done, the best test accuracy so far and its epoch, the log's rows and the training time."""

    epoch: int = 0
    best_top1: float = -1.0
    best_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    train_s: float = 0.0


@dataclass
class Run:
    """A fine-tuning run, built: the model and everything that trains it, the data, and what identifies the run
    (``identity``: what must be equal for a checkpoint to continue it)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    criterion: torch.nn.Module
    mixup: Optional[Callable]
    device: torch.device
    amp_dtype: Optional[torch.dtype]
    train_ds: Mapped
    test_ds: Mapped
    classes: list[str]
    steps_per_epoch: int
    lr: float
    identity: dict[str, Any]


def _build(model_name: str, data: Union[str, os.PathLike], rec: FinetuneRecipe, *, recipe: str, seed: int,
           device: str, limit_train: Optional[int], limit_test: Optional[int], max_steps_per_epoch: Optional[int],
           pretrained: bool, pretrained_file: Optional[Union[str, os.PathLike]], amp: bool) -> Run:
    """The model with its new head, the two splits with their transforms, the optimizer, schedule, loss and scaler."""
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
    criterion, mixup = criterion_and_mixup(rec, len(classes))
    amp_dtype = amp_dtype_for(dev, amp)
    scaler = torch.amp.GradScaler(dev.type, enabled=amp_dtype == torch.float16)
    identity = dict(
        model=model_name, data=str(data), recipe=recipe, recipe_config=rec.to_dict(), seed=seed,
        limit_train=limit_train, limit_test=limit_test, steps_per_epoch=steps_per_epoch, classes=classes,
        pretrained=pretrained, pretrained_file=str(pretrained_file) if pretrained_file else None,
    )
    return Run(model, optimizer, scheduler, scaler, criterion, mixup, dev, amp_dtype, train_ds, test_ds, classes,
               steps_per_epoch, lr, identity)


def _load_checkpoint(path: Path, identity: dict[str, Any]) -> dict[str, Any]:
    """Read ``checkpoint.pt`` (tensors and plain data only) and check that it belongs to the same run."""
    state = load_checkpoint(path)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise FinetuneError(f"{path} is not an sslzoo fine-tuning checkpoint. Choose another --output folder.")
    detail = differing_settings(identity, state["run"])
    if detail:
        raise FinetuneError(
            f"Cannot resume {path}: the run differs from the one that wrote it ({detail}). Resume with the same"
            " settings, or start the new run in another --output folder."
        )
    return state


def _resume(run: Run, path: Path) -> Progress:
    """The run's state restored from ``path`` (model, optimizer, schedule, scaler; the returned progress)."""
    state = _load_checkpoint(path, run.identity)
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    if run.scaler.is_enabled() and state["scaler"]:
        run.scaler.load_state_dict(state["scaler"])
    return Progress(epoch=state["epoch"], best_top1=state["best_top1"], best_epoch=state["best_epoch"],
                    history=list(state["history"]), train_s=state["train_s"])


def _save_checkpoint(run: Run, progress: Progress, path: Path) -> None:
    save_torch_atomic(dict(
        format=CHECKPOINT_FORMAT, run=run.identity, epoch=progress.epoch, model=run.model.state_dict(),
        optimizer=run.optimizer.state_dict(), scheduler=run.scheduler.state_dict(), scaler=run.scaler.state_dict(),
        best_top1=progress.best_top1, best_epoch=progress.best_epoch, history=progress.history,
        train_s=progress.train_s,
    ), path)


def _train(run: Run, progress: Progress, rec: FinetuneRecipe, out: Path, *, seed: int,
           num_workers: Optional[int], show_progress: bool) -> None:
    """The epochs from ``progress.epoch`` on: train, test, then checkpoint and log after each one."""
    log = CsvLog(out / LOG_NAME, columns=_LOG_COLUMNS)
    log.replace(progress.history)  # the checkpoint's history is the log up to where the run continues
    workers = default_num_workers() if num_workers is None else num_workers
    loader_args = dict(batch_size=rec.batch_size, num_workers=workers, pin_memory=run.device.type == "cuda")
    train_loader = DataLoader(run.train_ds, shuffle=True, drop_last=True, **loader_args)
    test_loader = DataLoader(run.test_ds, shuffle=False, **loader_args)
    for epoch in range(progress.epoch, rec.epochs):
        t0 = time.perf_counter()
        seed_epoch(seed, epoch)
        loss = train_epoch(
            run.model, train_loader, optimizer=run.optimizer, scheduler=run.scheduler, scaler=run.scaler,
            criterion=run.criterion, mixup=run.mixup, device=run.device, amp_dtype=run.amp_dtype,
            steps=run.steps_per_epoch, first_update=epoch * run.steps_per_epoch,
            desc=f"epoch {epoch + 1}/{rec.epochs}", progress=show_progress,
        )
        top1 = evaluate(run.model, test_loader, run.device, run.amp_dtype)
        if top1 > progress.best_top1:
            progress.best_top1, progress.best_epoch = top1, epoch + 1
        epoch_s = time.perf_counter() - t0
        progress.train_s += epoch_s
        progress.epoch = epoch + 1
        progress.history.append(dict(
            epoch=epoch + 1, lr=max(g["lr"] for g in run.optimizer.param_groups), train_loss=loss, test_top1=top1,
            best_top1=progress.best_top1, epoch_s=round(epoch_s, 3),
        ))
        _save_checkpoint(run, progress, out / CHECKPOINT_NAME)
        log.write(progress.history[-1])
        _logger.info("epoch %d/%d: loss %.4f, test top-1 %.2f (best %.2f)", epoch + 1, rec.epochs, loss, top1,
                     progress.best_top1)


def _publish(run: Run, progress: Progress, rec: FinetuneRecipe, out: Path, *, model_name: str,
             data: Union[str, os.PathLike], recipe: str, seed: int) -> dict[str, Any]:
    """The hub folder (the last epoch's model with its card) and ``results.json``; returns the results."""
    ran = dataclasses.replace(rec, warmup_epochs=warmup_run(rec, run.scheduler, run.steps_per_epoch))  # what ran
    results = dict(
        protocol=f"finetune:{recipe}", model=model_name, data=str(data), recipe=recipe, recipe_config=ran.to_dict(),
        recipe_warmup_epochs=rec.warmup_epochs,
        epochs=rec.epochs, lr=run.lr, best_top1=progress.best_top1, best_epoch=progress.best_epoch,
        last_top1=progress.history[-1]["test_top1"], num_classes=len(run.classes), classes=run.classes,
        train_images=len(run.train_ds), test_images=len(run.test_ds), steps_per_epoch=run.steps_per_epoch, seed=seed,
        device=str(run.device), train_wall_clock_s=round(progress.train_s, 3),
    )
    dataset_name = Path(str(data)).name or str(data)
    describe_finetuned(run.model, out.name, model_name, dataset_name, results)
    card = card_fields(model_name=model_name, dataset_name=dataset_name, recipe_name=recipe, recipe=ran, results=results)
    save_pretrained(run.model, out, card=card)
    write_text_atomic(out / RESULTS_NAME, json.dumps(results, indent=2) + "\n")
    return results


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
    run = _build(model_name, data, rec, recipe=recipe, seed=seed, device=device, limit_train=limit_train,
                 limit_test=limit_test, max_steps_per_epoch=max_steps_per_epoch, pretrained=pretrained,
                 pretrained_file=pretrained_file, amp=amp)
    progress_state = Progress()
    if resume and ckpt_path.is_file():
        progress_state = _resume(run, ckpt_path)
        _logger.info("Resuming %s after epoch %d of %d.", out, progress_state.epoch, rec.epochs)
    out.mkdir(parents=True, exist_ok=True)
    _train(run, progress_state, rec, out, seed=seed, num_workers=num_workers, show_progress=progress)
    results = _publish(run, progress_state, rec, out, model_name=model_name, data=data, recipe=recipe, seed=seed)
    return dict(results, model=run.model.eval())
