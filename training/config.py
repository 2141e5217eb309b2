"""Recipes (``training/recipes/*.yaml``) and the command line of ``sslzoo pretrain``.

Resolution order, later wins: :data:`DEFAULTS` -> the recipe -> the recipe's ``profiles.<name>`` (``--profile``) ->
``--set key.sub=value`` -> the named flags (``--arch``, ``--epochs`` ...). The resolved config is a plain nested dict,
written to ``config.yaml`` in the run folder; method and framework sections are validated by the dataclasses of
``training.methods`` when the method builds itself, and ``--method`` takes the names of ``training.methods.METHODS``.
"""

from __future__ import annotations

import argparse
import os
import copy
import re
from pathlib import Path
from typing import Any

import yaml

from sslzoo.command_line import CommandParser
from sslzoo.cpu_allocator import ALLOCATOR_MODES
from sslzoo.errors import SslzooError
from sslzoo.runlog import AMP_MODES
from sslzoo.validation import int_at_least, positive
from .data import DATA_MODES
from .methods import METHODS

RECIPES = Path(__file__).resolve().parent / "recipes"

DEFAULTS: dict[str, Any] = {
    "method": "mocov3",
    "base": None,  # framework override for ccrop ("dino")
    "arch": "vit_pico_patch8_32",
    "arch_kwargs": {},
    "init": "timm",
    "data": "cifar10",
    "train_limit": None,  # a seeded subset of this many training images (CPU runs)
    "data_mode": "auto",  # auto | memory | stream (training.data.source)
    "workers": None,  # DataLoader workers per rank when streaming (0: in the training process; None: min(4, CPUs))
    "prefetch": 2,  # batches each worker prepares ahead
    "strict_data": False,  # an unreadable image stops the run instead of being replaced
    "cache_dir": None,
    "epochs": 100,
    "steps": None,  # iterations (image batches); overrides epochs for the length of the run
    "batch_size": 512,  # global
    "seed": 0,
    "accum_steps": 1,  # micro-batches per optimizer step (gradient accumulation)
    "grad_checkpointing": False,  # activation checkpointing of the student's blocks
    "compile": False,  # torch.compile the transformer blocks
    "cpu_allocator": "retain",  # retain | system: keep freed memory in the process on CPU (sslzoo.cpu_allocator)
    "device": None,  # cpu | cuda | None (cuda when available)
    "amp": "bf16",  # bf16 | fp16 | auto | none; CUDA only, CPU runs are fp32 (sslzoo.runlog.amp_dtype)
    "optim": {
        "base_lr": 1.5e-4,  # per 256 images: lr = base_lr * batch_size / 256
        "min_lr": 0.0,
        "warmup_epochs": 10,
        "weight_decay": 0.1,
        "weight_decay_end": None,  # None: constant
        "betas": [0.9, 0.999],
        "decay_all": False,  # APS decays every parameter
        "clip_grad": None,
        "clip_mode": "norm",  # norm (global norm) | per_param (DINO's clip_gradients)
    },
    "framework": {},
    "method_args": {},
    "views": {},
    "log": {"every": 10, "knn_every_epochs": 0, "knn_every_steps": 0, "knn_bank": 5000, "knn_queries": 2000,
            "knn_k": 20, "knn_split": "test", "progress": True, "tensorboard": True},
    "ckpt_every": 500,
    "keep": 1,  # checkpoints kept: checkpoint.pt, and with N > 1 the last N as checkpoint-<iteration>.pt
    "output": None,
    "resume": None,
    "recipe": None,
    "profile": None,
    "profiles": {},
    "description": "",
}


class ConfigError(SslzooError, ValueError):
    """A recipe or command-line setting that does not exist or cannot be parsed."""


def deep_merge(base: dict[str, Any], override: dict[str, Any], *, strict: bool, where: str = "") -> dict[str, Any]:
    """``base`` updated by ``override`` recursively; with ``strict`` unknown top-level keys of dict sections fail."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if strict and key not in out:
            raise ConfigError(f"unknown setting {where}{key!r}; known: {sorted(out)}.")
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in ("framework", "method_args", "profiles",
                                                                                      "views", "arch_kwargs"):
            out[key] = deep_merge(out[key], value, strict=strict, where=f"{where}{key}.")
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value, strict=False)
        else:
            out[key] = copy.deepcopy(value)
    return out


def recipe_path(name: str) -> Path:
    """A recipe name (``aps``) or a path to a YAML file."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    candidate = RECIPES / f"{name}.yaml"
    if not candidate.is_file():
        known = sorted(p.stem for p in RECIPES.glob("*.yaml"))
        raise ConfigError(f"no recipe {name!r}: pass one of {known} or the path of a YAML file.")
    return candidate


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 floats: ``1e-3`` is a number, not the string PyYAML 1.1 makes of it."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
               r"|[0-9][0-9_]*[eE][-+]?[0-9]+|\.(?:inf|Inf|INF)|[-+]\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."))


def parse_yaml(text: str) -> Any:
    """Parse recipe or ``--set`` YAML, reading exponent floats without a dot (``5e-4``) as numbers."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def load_recipe(name: str) -> dict[str, Any]:
    return parse_yaml(recipe_path(name).read_text(encoding="utf-8")) or {}


def set_dotted(cfg: dict[str, Any], assignment: str) -> None:
    """Apply ``a.b.c=value`` (the value parsed as YAML) to ``cfg`` in place."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set expects key=value (e.g. optim.base_lr=1e-3), got {assignment!r}.")
    parts = key.strip().split(".")
    node = cfg
    for part in parts[:-1]:
        if part not in node:
            if node is cfg:
                raise ConfigError(f"unknown setting {key!r} in --set.")
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: {part!r} is not a section.")
    fixed = node is cfg or (len(parts) == 2 and isinstance(DEFAULTS.get(parts[0]), dict) and DEFAULTS[parts[0]])
    if fixed and parts[-1] not in node:
        raise ConfigError(f"unknown setting {key!r} in --set; known: {sorted(node)}.")
    node[parts[-1]] = parse_yaml(raw)


def parser(prog: str = "sslzoo pretrain") -> argparse.ArgumentParser:
    p = CommandParser(prog=prog,
                                description="Self-supervised pre-training of a ViT with a recipe and overrides.")
    p.add_argument("--recipe", help="recipe name in training/recipes or a YAML path (default: the method's recipe)")
    p.add_argument("--method", choices=list(METHODS))
    p.add_argument("--profile", help="apply the recipe's profiles.<name> overrides (e.g. quick: a small CPU run)")
    p.add_argument("--arch", help="vit_{pico,micro,tiny,small,base}_patch{p}_{img}, a registry or timm name")
    p.add_argument("--data", help="training data: ImageFolder root, CIFAR/STL folder or cifar10/cifar100/stl10")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int)
    length.add_argument("--steps", type=int, help="run this many iterations (image batches) instead of epochs")
    p.add_argument("--batch-size", type=int, help="global batch size")
    p.add_argument("--lr", type=float, help="base learning rate per 256 images")
    p.add_argument("--seed", type=int)
    p.add_argument("--output", help="run folder (default runs/<method>-<arch>)")
    p.add_argument("--resume", help="'auto': continue from the run folder's checkpoint if there is one; or a path")
    p.add_argument("--ckpt-every", type=int, help="write a checkpoint every N iterations (and at the end)")
    p.add_argument("--device", choices=["cpu", "cuda"])
    p.add_argument("--train-limit", type=int, help="train on a seeded subset of this many images")
    p.add_argument("--data-mode", choices=list(DATA_MODES),
                   help="memory: decode the split once into RAM (fixed-size sets); stream: DataLoader workers decode "
                        "files (ImageNet, mixed sizes); auto (default) chooses by size")
    p.add_argument("--workers", type=int, help="DataLoader workers per process when streaming (default: min(4, CPU cores))")
    p.add_argument("--strict-data", action="store_true",
                   help="stop at an unreadable image (default: log it and replace it by another)")
    p.add_argument("--accum-steps", type=int, help="split each optimizer step into N micro-batches")
    p.add_argument("--grad-checkpointing", action="store_true", help="activation checkpointing of the ViT blocks")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the transformer blocks (--no-compile: off, the default)")
    p.add_argument("--cpu-allocator", choices=list(ALLOCATOR_MODES),
                   help="retain (default): keep freed memory in the process on CPU, so steps do not page-fault their "
                        "activations in again (glibc; bit-identical results); system: the C library's default")
    p.add_argument("--keep", type=int, help="keep the last N checkpoints (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any setting, e.g. --set framework.temperature=0.1 (repeatable)")
    return p


def validate(cfg: dict[str, Any]) -> None:
    """Refuse lengths, sizes and rates that cannot train, whichever of recipe, --set or flag gave them."""
    if cfg["data"] in (None, ""):
        where = f"profile {cfg['profile']!r} of recipe {cfg['recipe']!r}" if cfg.get("profile") else "the recipe"
        raise ConfigError(f"{where} names no training data: pass --data, an ImageNet-style folder (train/<class>/"
                          "*.JPEG) or a file list.")
    int_at_least("batch_size", cfg["batch_size"])
    if cfg["amp"] not in (*AMP_MODES, "fp32", None):
        raise ConfigError(f"amp must be one of {list(AMP_MODES)}, got {cfg['amp']!r} (--set amp=...).")
    if cfg["steps"] is not None:
        int_at_least("steps", cfg["steps"])
    else:
        int_at_least("epochs", cfg["epochs"])
    positive("optim.base_lr", cfg["optim"]["base_lr"], flag="--lr")
    int_at_least("ckpt_every", cfg["ckpt_every"])
    int_at_least("train_limit", cfg["train_limit"])
    int_at_least("workers", cfg["workers"], 0, flag="--workers")
    int_at_least("prefetch", cfg["prefetch"], flag="--set prefetch=N")
    int_at_least("accum_steps", cfg["accum_steps"], flag="--accum-steps")
    int_at_least("keep", cfg["keep"], flag="--keep")
    if cfg["data_mode"] not in DATA_MODES:
        raise ConfigError(f"data_mode must be auto, memory or stream, got {cfg['data_mode']!r} (--data-mode).")
    if cfg["cpu_allocator"] not in ALLOCATOR_MODES:
        raise ConfigError(f"cpu_allocator must be retain or system, got {cfg['cpu_allocator']!r} (--cpu-allocator).")
    for key in ("every", "knn_bank", "knn_queries", "knn_k"):
        int_at_least(f"log.{key}", cfg["log"][key], flag=f"--set log.{key}=N")
    for key in ("knn_every_epochs", "knn_every_steps"):
        int_at_least(f"log.{key}", cfg["log"][key], 0, flag=f"--set log.{key}=N")


_NOT_OVERRIDES = ("help", "recipe", "method", "profile", "set")


def given_options(p: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """The options a command line set beyond the method, recipe and profile, as ``--flag value`` strings with the
    ``--set`` assignments last: what the model card lists as the run's overrides."""
    out = []
    for action in p._actions:  # noqa: SLF001 - argparse keeps its options only there
        value = getattr(args, action.dest, None)
        if action.dest in _NOT_OVERRIDES or value is None:
            continue
        if isinstance(value, bool):
            if value == action.default:
                continue
            negative = [o for o in action.option_strings if o.startswith("--no-")]
            out.append(action.option_strings[0] if value or not negative else negative[0])
        else:
            out.append(f"{action.option_strings[0]} {value}")
    return out + [f"--set {assignment}" for assignment in args.set]


def resolve(argv: list[str] | None = None, *, prog: str = "sslzoo pretrain") -> dict[str, Any]:
    """The resolved config for a command line (``prog``: the program's name in its usage and errors).

    ``overrides`` records the options given beyond the method, recipe and profile (see :func:`given_options`).
    """
    p = parser(prog)
    args = p.parse_args(argv)
    recipe_name = args.recipe or args.method or "mocov3"
    recipe = load_recipe(recipe_name)
    cfg = deep_merge(DEFAULTS, recipe, strict=True)
    cfg["recipe"] = str(recipe_name)
    if args.profile:
        profiles = cfg.get("profiles") or {}
        if args.profile not in profiles:
            raise ConfigError(f"recipe {recipe_name!r} has no profile {args.profile!r}; it has {sorted(profiles)}.")
        cfg = deep_merge(cfg, profiles[args.profile], strict=True)
        cfg["profile"] = args.profile
    for assignment in args.set:
        set_dotted(cfg, assignment)
    flags = {"method": args.method, "arch": args.arch, "data": args.data, "epochs": args.epochs,
             "steps": args.steps, "batch_size": args.batch_size, "seed": args.seed, "output": args.output,
             "resume": args.resume, "ckpt_every": args.ckpt_every, "device": args.device,
             "train_limit": args.train_limit, "data_mode": args.data_mode, "workers": args.workers,
             "accum_steps": args.accum_steps, "compile": args.compile, "keep": args.keep,
             "cpu_allocator": args.cpu_allocator}
    cfg.update({k: v for k, v in flags.items() if v is not None})
    if args.epochs is not None:
        cfg["steps"] = None
    if args.lr is not None:
        cfg["optim"]["base_lr"] = args.lr
    if args.no_progress:
        cfg["log"]["progress"] = False
    if args.strict_data:
        cfg["strict_data"] = True
    if args.grad_checkpointing:
        cfg["grad_checkpointing"] = True
    if cfg["workers"] is None:
        cfg["workers"] = min(4, os.cpu_count() or 1)
    if cfg["output"] is None:
        arch = cfg["arch"] if isinstance(cfg["arch"], str) else "custom"
        cfg["output"] = str(Path("runs") / f"{cfg['method']}-{arch}")
    cfg["overrides"] = given_options(p, args)
    validate(cfg)
    return cfg
