"""The evaluation sub-commands of ``sslzoo``: knn, linear, features, finetune.

Building their parsers imports nothing heavy (``sslzoo --help`` and ``sslzoo list`` stay fast); each command loads
the evaluation stack when it runs, after its options have been checked.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..validation import int_at_least
from .dense_command import add_dense_command
from .finetune.cli import add_finetune_arguments, run_from_args
from .options import check_knn_eval_options, check_linear_eval_options
from .protocol_names import KNN_PRESETS, POOLS, SAMPLE


def _write_json(path: str | None, result: dict[str, Any]) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(result, indent=2, default=str) + "\n")


def _header(result: dict[str, Any]) -> str:
    data = "embedded CIFAR-10 (JPEG q75) sample" if result["data"] == SAMPLE else result["data"]
    return f"model {result['model']} [{result['weights']}] · data {data} · pool {result['pool']}"


def _cmd_knn(args: argparse.Namespace) -> int:
    check_knn_eval_options(preset=args.preset, k=args.k, temperature=args.temperature, batch_size=args.batch_size)
    from .protocols import knn_eval, load_for_eval  # torch, timm, faiss: after the options are known to be good

    loaded = load_for_eval(args.model, random_init=args.random_init, pretrained_file=args.pretrained_file)
    result = knn_eval(loaded, args.data, preset=args.preset, k=args.k, temperature=args.temperature, pool=args.pool,
                      batch_size=args.batch_size, cache=not args.no_cache, device=args.device)
    print(_header(result))
    print(f"{result['protocol']}: T={result['temperature']}, {result['num_train']} train / {result['num_test']} test images,"
          f" {result['seconds']:.1f} s")
    print("| k | top-1 (%) |\n|---:|---:|")
    for k, acc in result["top1"].items():
        print(f"| {k} | {acc:.2f} |")
    _write_json(args.json, result)
    return 0


def _cmd_linear(args: argparse.Namespace) -> int:
    kwargs = dict(epochs=args.epochs, seed=args.seed)
    if args.lrs is not None:
        kwargs["lrs"] = tuple(args.lrs)
    check_linear_eval_options(batch_size=args.batch_size, **kwargs)
    from .protocols import linear_eval, load_for_eval  # torch, timm: after the options are known to be good

    loaded = load_for_eval(args.model, random_init=args.random_init, pretrained_file=args.pretrained_file)
    result = linear_eval(loaded, args.data, pool=args.pool, batch_size=args.batch_size, cache=not args.no_cache,
                         device=args.device, **kwargs)
    best = result["best"]
    print(_header(result))
    print(f"{result['protocol']}: best lr {best['lr']:g}, weight decay {best['weight_decay']:g}"
          f" (chosen on a held-out part of train), {result['seconds']:.1f} s")
    print("| split | top-1 (%) |\n|---|---:|")
    print(f"| val (train hold-out) | {best['val_acc']:.2f} |\n| test | {best['test_acc']:.2f} |")
    _write_json(args.json, result)
    return 0


def _cmd_features(args: argparse.Namespace) -> int:
    int_at_least("batch_size", args.batch_size)
    from .protocols import load_for_eval, save_features  # torch, timm: after the options are known to be good

    loaded = load_for_eval(args.model, random_init=args.random_init, pretrained_file=args.pretrained_file)
    result = save_features(loaded, args.data, args.output, splits=args.splits, pool=args.pool,
                           batch_size=args.batch_size, device=args.device)
    for split, n in result["counts"].items():
        print(f"{split}: {n} images")
    print(f"wrote {args.output}")
    return 0


def _model_arguments(p: argparse.ArgumentParser, *, data_required: bool) -> None:
    p.add_argument("--model", required=True,
                   help="registry name or alias, local-dir:PATH, hf-hub:REPO, or any timm ViT name")
    p.add_argument("--data", default=None if data_required else SAMPLE, required=data_required,
                   help="ImageFolder root (train/ and test|val/), CIFAR/STL-10 folder, cifar10|cifar100|stl10, or"
                        f" '{SAMPLE}' (the CIFAR-10 sample shipped in the package)"
                        + ("" if data_required else f"; default {SAMPLE}"))
    p.add_argument("--random-init", action="store_true", help="evaluate the architecture without its weights")
    p.add_argument("--pretrained-file", help="a weight file to load instead of the registered one")
    p.add_argument("--pool", default="cls", choices=POOLS)
    p.add_argument("--batch-size", type=int, default=256, help="images per forward pass batch (at least 1)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cpu)")


def add_eval_commands(sub: argparse._SubParsersAction) -> None:
    """Register knn, linear, features and finetune on the ``sslzoo`` parser."""
    p = sub.add_parser("knn", help="weighted kNN accuracy of frozen features (DINO protocol)")
    _model_arguments(p, data_required=False)
    p.add_argument("--preset", default="knn:dino", choices=sorted(KNN_PRESETS))
    p.add_argument("--k", type=int, nargs="+",
                   help="neighbour counts, each at least 1; one above the bank size uses the whole bank"
                        " (default: the preset's)")
    p.add_argument("--temperature", type=float, help="vote temperature, greater than 0 (default: the preset's)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.set_defaults(func=_cmd_knn)

    p = sub.add_parser("linear", help="linear probe on frozen features (linear:frozen)")
    _model_arguments(p, data_required=False)
    p.add_argument("--lrs", type=float, nargs="+", help="learning rates swept in parallel (each greater than 0)")
    p.add_argument("--epochs", type=int, default=100, help="epochs of the probe (at least 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.set_defaults(func=_cmd_linear)

    p = sub.add_parser("features", help="write frozen features of a dataset to a safetensors file")
    _model_arguments(p, data_required=True)
    p.add_argument("--output", required=True, help="the .safetensors file to write")
    p.add_argument("--splits", nargs="+", default=["train", "test"])
    p.set_defaults(func=_cmd_features)

    p = sub.add_parser("finetune", help="fine-tune a model on an ImageFolder dataset (the papers' recipes)")
    add_finetune_arguments(p)
    p.set_defaults(func=run_from_args)

    add_dense_command(sub)
