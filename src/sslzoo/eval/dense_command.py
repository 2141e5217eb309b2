"""``sslzoo dense``: dense:linear / dense:nn mIoU of a frozen model's patch tokens.

Building the parser imports nothing heavy; the command checks its options, then opens the data (a bad layout is
named before a model is built), then loads the model and checks the input size against its patch size.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .protocol_names import DENSE_DATA


def _cmd_dense(args: argparse.Namespace) -> int:
    from .dense import check_dense_options, dense_eval, open_dense_splits
    from .protocols import load_for_eval

    name = check_dense_options(protocol=args.protocol, layers=args.layers, size=args.size, batch_size=args.batch_size,
                               k=args.k, temperature=args.temperature, bank_size=args.bank_size, lrs=args.lrs,
                               epochs=args.epochs)
    if args.device in (None, "cpu"):
        from ..cpu_allocator import retain_freed_memory

        retain_freed_memory()  # the command owns its process: the linear heads' upsampled logits stay mapped
    splits = open_dense_splits(args.data)  # a bad layout is named before a model is built
    loaded = load_for_eval(args.model, random_init=args.random_init, pretrained_file=args.pretrained_file)
    result = dense_eval(loaded, splits, protocol=name, layers=args.layers, size=args.size,
                        batch_size=args.batch_size, cache=not args.no_cache, device=args.device, k=args.k,
                        temperature=args.temperature, bank_size=args.bank_size, lrs=args.lrs, epochs=args.epochs,
                        seed=args.seed, picture=args.picture)
    print(f"model {result['model']} [{result['weights']}] · data {result['data']} · layers {result['layers']}"
          f" · {result['size']} px (patch {result['patch']})")
    detail = (f"lr {result['best_lr']:g} chosen on {result['num_held_out']} held-out train images"
              if name == "dense:linear" else
              f"k={result['k']}, T={result['temperature']:g}, bank of {result['bank_patches']} patches")
    print(f"{name}: {detail}; {result['num_train']} train / {result['num_val']} val images, {result['seconds']:.1f} s")
    print("| protocol | mIoU (%) | pixel acc. (%) |\n|---|---:|---:|")
    print(f"| {name} | {result['miou']:.2f} | {result['pixel_acc']:.2f} |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2, default=str) + "\n")
    if args.picture:
        print(f"wrote {args.picture}")
    return 0


def add_dense_command(sub: argparse._SubParsersAction) -> None:
    """Register ``dense`` on the ``sslzoo`` parser."""
    p = sub.add_parser("dense", help="segmentation mIoU of frozen patch tokens (dense:linear, dense:nn)",
                       description="Dense evaluation of frozen patch tokens: dense:linear (a linear classifier per"
                       " token) or dense:nn (Hummingbird nearest-neighbour labelling), mIoU over the val split.")
    p.add_argument("--model", required=True,
                   help="registry name or alias, local-dir:PATH, hf-hub:REPO, or any timm ViT name")
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
    p.add_argument("--random-init", action="store_true", help="evaluate the architecture without its weights")
    p.add_argument("--pretrained-file", help="a weight file to load instead of the registered one")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: the model's)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--picture", metavar="PNG", help="write val images, ground truth and prediction side by side")
    p.set_defaults(func=_cmd_dense)
