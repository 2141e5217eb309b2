"""The evaluation sub-commands of ``sslzoo``: knn, linear, features, finetune.

Building their parsers imports nothing heavy (``sslzoo --help`` and ``sslzoo list`` stay fast); each command loads
the evaluation stack when it runs, after its options have been checked.
"""

from __future__ import annotations

import argparse

from ..validation import int_at_least
from .dense_command import add_dense_command
from .finetune.cli import add_finetune_arguments, run_from_args
from .options import check_knn_eval_options, check_linear_eval_options
from .protocol_command import add_model_arguments, add_output_arguments, protocol_help, run_protocol_command
from .protocol_table import POOLS, SAMPLE, protocols_of


def _cmd_knn(args: argparse.Namespace) -> int:
    check_knn_eval_options(preset=args.preset, k=args.k, temperature=args.temperature, batch_size=args.batch_size)
    return run_protocol_command(args, args.preset, k=args.k, temperature=args.temperature, pool=args.pool,
                                batch_size=args.batch_size)


def _cmd_linear(args: argparse.Namespace) -> int:
    kwargs = dict(epochs=args.epochs, seed=args.seed)
    if args.lrs is not None:
        kwargs["lrs"] = tuple(args.lrs)
    check_linear_eval_options(batch_size=args.batch_size, **kwargs)
    return run_protocol_command(args, "linear:frozen", pool=args.pool, batch_size=args.batch_size, **kwargs)


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
    add_model_arguments(p)
    p.add_argument("--data", default=None if data_required else SAMPLE, required=data_required,
                   help="ImageFolder root (train/ and test|val/), CIFAR/STL-10 folder, cifar10|cifar100|stl10, or"
                        f" '{SAMPLE}' (the CIFAR-10 sample shipped in the package)"
                        + ("" if data_required else f"; default {SAMPLE}"))
    p.add_argument("--pool", default="cls", choices=POOLS,
                   help="the feature: the CLS token, the mean patch token, both concatenated, or the last 4 blocks' CLS")
    p.add_argument("--batch-size", type=int, default=256, help="images per forward pass batch (at least 1)")


def add_eval_commands(sub: argparse._SubParsersAction) -> None:
    """Register knn, linear, features and finetune on the ``sslzoo`` parser."""
    p = sub.add_parser("knn", **protocol_help("knn", "weighted kNN accuracy of frozen features"))
    _model_arguments(p, data_required=False)
    p.add_argument("--preset", default="knn:dino", choices=[q.name for q in protocols_of("knn")],
                   help="the protocol: " + "; ".join(f"{q.name}: {q.summary}" for q in protocols_of("knn")))
    p.add_argument("--k", type=int, nargs="+",
                   help="neighbour counts, each at least 1; one above the bank size uses the whole bank"
                        " (default: the preset's)")
    p.add_argument("--temperature", type=float, help="vote temperature, greater than 0 (default: the preset's)")
    add_output_arguments(p)
    p.set_defaults(func=_cmd_knn)

    p = sub.add_parser("linear", **protocol_help("linear", "linear probe on frozen features"))
    _model_arguments(p, data_required=False)
    p.add_argument("--lrs", type=float, nargs="+", help="learning rates swept in parallel (each greater than 0)")
    p.add_argument("--epochs", type=int, default=100, help="epochs of the probe (at least 1)")
    p.add_argument("--seed", type=int, default=0)
    add_output_arguments(p)
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
