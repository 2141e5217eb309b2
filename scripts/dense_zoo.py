"""The dense numbers of the zoo: dense:linear and dense:nn mIoU on the cifar10-mosaic benchmark, with the references.

    python scripts/dense_zoo.py --cifar10 /work/data/cifar10-jpg                       # every zoo checkpoint + references
    python scripts/dense_zoo.py --cifar10 PATH --models dino_vit_micro_patch8_32.cifar10   # one checkpoint again

Each entry (a zoo checkpoint, raw pixels on the same 8 px patch grid, the micro ViT/8 at its seeded random init) is
measured by :func:`sslzoo.eval.dense.dense_eval` with both protocols, on the same mosaics (seed 0: 1,000 train, 300
val, 96 px), and written to ``benchmarks/results/dense_zoo.json`` as soon as it is done; an entry whose weights and
settings are already there is kept, so a re-trained checkpoint is measured again by naming it (its weights' sha256
changes) and an interrupted run resumes. Prints the table in Markdown.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from sslzoo import registry
from sslzoo.eval.dense_baselines import raw_pixels_like
from sslzoo.eval.features import weights_sha256
from sslzoo.eval.protocol_table import DENSE_PROTOCOLS, find_protocol
from sslzoo.eval.protocols import LoadedModel, load_for_eval

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "dense_zoo.json"
RANDOM_ARCH = "dino_vit_micro_patch8_32"


def zoo_names() -> list[str]:
    return [n for n in registry.list_models(pretrained=True) if n.endswith(".cifar10")]


def measure(loaded: LoadedModel, data: Any, layers: int, seed: int) -> dict[str, Any]:
    entry: dict[str, Any] = {"model": loaded.name, "weights": loaded.weights,
                             "weights_sha256": weights_sha256(loaded.model), "layers": layers, "seed": seed}
    for protocol in DENSE_PROTOCOLS:
        r = find_protocol(protocol).run(loaded, data, layers=layers, seed=seed)
        keep = ("miou", "pixel_acc", "size", "seconds", "best_lr", "k", "temperature", "bank_patches")
        entry[protocol] = {k: r[k] for k in keep if k in r}
    return entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cifar10", help="CIFAR-10 ImageFolder tree or pickles (default: torchvision's, downloaded)")
    parser.add_argument("--models", nargs="+", help="zoo names to (re)measure (default: all, and the references)")
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    data = "cifar10-mosaic" + (f":{args.cifar10}" if args.cifar10 else "")
    splits = None
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    entries = results.setdefault("entries", {})
    names = args.models or [*zoo_names(), "raw pixels", "random init"]
    for name in names:
        if name == "raw pixels":
            reference = load_for_eval(zoo_names()[0])
            loaded = LoadedModel(raw_pixels_like(reference.model), "raw pixels", "8 px patches of pixels, normalised")
        elif name == "random init":
            loaded = load_for_eval(RANDOM_ARCH, random_init=True)
        else:
            loaded = load_for_eval(name)
        old = entries.get(name)
        if (old and old["weights_sha256"] == weights_sha256(loaded.model) and old["layers"] == args.layers
                and old["seed"] == args.seed and not args.models):
            continue
        start = time.perf_counter()
        if splits is None:  # the mosaics are built once, for every entry and protocol that is measured
            splits = find_protocol(DENSE_PROTOCOLS[0]).open_data(data)
        entries[name] = measure(loaded, splits, args.layers, args.seed)
        print(f"{name}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
        results.update(data="cifar10-mosaic (seed 0: 1,000 train / 300 val mosaics of 96 px, CIFAR-10 train / test)",
                       command="python scripts/dense_zoo.py" + (" --cifar10 PATH" if args.cifar10 else ""),
                       machine={"torch": torch.__version__, "python": platform.python_version()})
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"| model | dense:linear mIoU (%) | dense:nn mIoU (%) | pixel acc. linear / nn (%) |\n|---|---:|---:|---:|")
    for name, e in entries.items():
        lin, nn = e["dense:linear"], e["dense:nn"]
        print(f"| {name} | {lin['miou']:.2f} | {nn['miou']:.2f} | {lin['pixel_acc']:.1f} / {nn['pixel_acc']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
