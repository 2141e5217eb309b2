"""The flags of ``sslzoo finetune``: one per recipe field and one per run setting of :func:`~sslzoo.eval.finetune.run.finetune`.

Building the parser imports no torch; :func:`run_from_args` loads the fine-tuning stack when the command runs.
"""

from __future__ import annotations

import argparse
from typing import Any, Callable

from ...cpu_allocator import retain_freed_memory
from .recipes import FINETUNE_RECIPES, NORMALIZATIONS, TRAIN_CROPS, check_finetune_options

# recipe fields that have a flag: name -> (type, help)
_RECIPE_FLAGS: dict[str, tuple[Callable[[str], Any], str]] = {
    "epochs": (int, "training epochs"),
    "batch_size": (int, "images per optimizer step (even when mixup/cutmix is on)"),
    "lr": (float, "absolute peak learning rate (replaces base lr x batch scaling)"),
    "base_lr": (float, "base learning rate, scaled by batch size / --lr-batch-divisor"),
    "lr_batch_divisor": (int, "the lr scaling rule: lr = base lr x batch size / this (0: no scaling)"),
    "weight_decay": (float, "AdamW weight decay (never on 1-D parameters, position embedding, class token)"),
    "layer_decay": (float, "layer-wise lr decay factor (1 turns it off)"),
    "warmup_epochs": (float, "epochs of linear warm-up"),
    "warmup_lr": (float, "learning rate at the start of the warm-up"),
    "min_lr": (float, "final learning rate of the cosine"),
    "drop_path": (float, "stochastic depth rate"),
    "auto_augment": (str, "timm RandAugment string, e.g. rand-m9-mstd0.5-inc1 ('none' turns it off)"),
    "mixup": (float, "mixup alpha (0: off)"),
    "cutmix": (float, "cutmix alpha (0: off)"),
    "mixup_prob": (float, "probability of applying mixup or cutmix to a batch"),
    "mixup_switch_prob": (float, "probability of cutmix instead of mixup when both are on"),
    "smoothing": (float, "label smoothing"),
    "re_prob": (float, "random erasing probability"),
    "train_crop": (str, f"training crop: {' or '.join(TRAIN_CROPS)} (RandomCrop with padding 4, for CIFAR)"),
    "normalize": (str, f"mean/std: {' or '.join(NORMALIZATIONS)} (the model's pretrained_cfg)"),
    "eval_crop_pct": (float, "crop_pct of the test transform (1: no resize)"),
}
_RUN_FLAGS = (
    "recipe", "resume", "seed", "device", "num_workers", "limit_train", "limit_test", "max_steps_per_epoch",
    "pretrained", "pretrained_file", "amp", "progress",
)


def add_finetune_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the flags of :func:`finetune` to an argparse (sub)parser; :func:`run_from_args` runs it."""
    parser.add_argument("--model", required=True, help="model name, alias, local-dir:PATH, hf-hub:REPO or timm name")
    parser.add_argument("--data", required=True, help="ImageFolder root with train/ and test/ (or val/)")
    parser.add_argument("--output", required=True, help="run folder: checkpoint, log, results and the hub folder")
    parser.add_argument("--recipe", default="default", choices=list(FINETUNE_RECIPES), help="hyper-parameter preset")
    group = parser.add_argument_group("recipe overrides (default: the recipe's value)")
    for name, (kind, text) in _RECIPE_FLAGS.items():
        choices = {"train_crop": TRAIN_CROPS, "normalize": NORMALIZATIONS}.get(name)
        group.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None, choices=choices, help=text)
    parser.add_argument("--resume", action="store_true", help="continue the run in --output from its checkpoint.pt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--num-workers", type=int, default=None,
                        help="DataLoader workers (default: the cores this process may use, at most 4)")
    parser.add_argument("--limit-train", type=int, default=None, help="use a random subset of N training images")
    parser.add_argument("--limit-test", type=int, default=None, help="use a random subset of N test images")
    parser.add_argument("--max-steps-per-epoch", type=int, default=None, help="cap the optimizer steps per epoch")
    parser.add_argument("--pretrained-file", default=None, help="weight file for a registry name")
    parser.add_argument("--no-pretrained", dest="pretrained", action="store_false", help="train from scratch")
    parser.add_argument("--no-amp", dest="amp", action="store_false", help="full precision on CUDA")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return parser


def finetune_kwargs_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :func:`finetune` (after ``model_name`` and ``data``) from parsed flags."""
    kwargs = {name: getattr(args, name) for name in (*_RUN_FLAGS, *_RECIPE_FLAGS)}
    return dict(kwargs, output=args.output)


def run_from_args(args: argparse.Namespace) -> int:
    """Run ``sslzoo finetune`` from flags parsed by a parser set up with :func:`add_finetune_arguments`."""
    kwargs = finetune_kwargs_from_args(args)
    check_finetune_options(kwargs["recipe"], **{name: kwargs[name] for name in (
        "num_workers", "limit_train", "limit_test", "max_steps_per_epoch", *_RECIPE_FLAGS)})
    from ...runlog import resolve_device  # torch, timm: after the options are known to be good
    from .run import finetune

    if resolve_device(args.device).type == "cpu":
        retain_freed_memory()  # the command owns its process: each step's activations stay mapped (cpu_allocator)
    results = finetune(args.model, args.data, **kwargs)
    print(
        f"{results['protocol']} on {results['data']}: best top-1 {results['best_top1']:.2f} (epoch"
        f" {results['best_epoch']}), last top-1 {results['last_top1']:.2f} after {results['epochs']} epochs"
        f" ({results['train_wall_clock_s']:.0f} s). Load it with sslzoo.create_model('local-dir:{args.output}')."
    )
    return 0
