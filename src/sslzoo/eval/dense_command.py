"""``sslzoo dense``: dense:linear / dense:nn mIoU of a frozen model's patch tokens.

Building the parser imports nothing heavy; the command checks its options, then opens the data (a bad layout is
named before a model is built), then loads the model and checks the input size against its patch size.
"""

from __future__ import annotations

import argparse

from .protocol_command import add_model_arguments, add_output_arguments, protocol_help, run_protocol_command
from .protocol_table import DENSE_DATA


def _cmd_dense(args: argparse.Namespace) -> int:
    from .dense import check_dense_options

    name = check_dense_options(protocol=args.protocol, layers=args.layers, size=args.size, batch_size=args.batch_size,
                               k=args.k, temperature=args.temperature, bank_size=args.bank_size, lrs=args.lrs,
                               epochs=args.epochs)
    if args.device in (None, "cpu"):
        from ..cpu_allocator import retain_freed_memory

        retain_freed_memory()  # the command owns its process: the linear heads' upsampled logits stay mapped
    code = run_protocol_command(args, name, layers=args.layers, size=args.size, batch_size=args.batch_size, k=args.k,
                                temperature=args.temperature, bank_size=args.bank_size, lrs=args.lrs,
                                epochs=args.epochs, seed=args.seed, picture=args.picture)
    if args.picture:
        print(f"wrote {args.picture}")
    return code


def add_dense_command(sub: argparse._SubParsersAction) -> None:
    """Register ``dense`` on the ``sslzoo`` parser."""
    p = sub.add_parser("dense", **protocol_help("dense", "segmentation mIoU of frozen patch tokens"))
    add_model_arguments(p)
    p.add_argument("--data", default=DENSE_DATA,
                   help=f"{DENSE_DATA} (CIFAR-10 mosaics; {DENSE_DATA}:PATH builds them from the CIFAR-10 at PATH),"
                        " voc2012, a VOCdevkit or ADEChallengeData2016 folder, or a folder with images/ and masks/,"
                        f" each with train/ and val/ (default {DENSE_DATA})")
    p.add_argument("--protocol", default="linear", help="linear (dense:linear, default) or nn (dense:nn)")
    p.add_argument("--layers", type=int, default=1, help="patch tokens of the last N blocks, concatenated (1 or 4)")
    p.add_argument("--size", type=int, help="square input size, a multiple of the patch size (default: the model's)")
    p.add_argument("--k", type=int, help="dense:nn neighbours (default 30)")
    p.add_argument("--temperature", type=float, help="dense:nn softmax temperature (default 0.02)")
    p.add_argument("--bank-size", type=int, help="dense:nn bound on bank patches, sampled by --seed (default 1000000)")
    p.add_argument("--lrs", type=float, nargs="+", help="dense:linear learning rates, trained at once")
    p.add_argument("--epochs", type=int, help="dense:linear epochs (default 10)")
    p.add_argument("--seed", type=int, default=0, help="held-out slice of train, bank sample")
    p.add_argument("--batch-size", type=int, default=64, help="images per extraction batch")
    add_output_arguments(p)
    p.add_argument("--picture", metavar="PNG", help="write val images, ground truth and prediction side by side")
    p.set_defaults(func=_cmd_dense)
