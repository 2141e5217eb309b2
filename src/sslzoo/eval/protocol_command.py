"""The one command path of every protocol (``sslzoo knn``, ``linear``, ``dense``): their shared flags, then data
opened, model loaded, the protocol of :data:`~sslzoo.eval.protocol_table.PROTOCOLS` run and its report printed.

Building parsers imports nothing heavy; torch, timm and faiss are imported when a command runs, after its options
have been checked.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .protocol_table import PROTOCOLS, protocols_of, report_lines


def protocol_help(command: str, short: str) -> dict[str, str]:
    """The sub-command's help and description, naming the protocols of the table that it runs."""
    runs = protocols_of(command)
    names = ", ".join(p.name for p in runs)
    return {"help": f"{short} ({names})",
            "description": f"{short[0].upper()}{short[1:]}. " + " ".join(f"{p.name}: {p.summary}." for p in runs)}


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """The model flags every evaluation command takes: --model, --random-init, --pretrained-file, --device."""
    p.add_argument("--model", required=True,
                   help="registry name or alias, local-dir:PATH, hf-hub:REPO, or any timm ViT name")
    p.add_argument("--random-init", action="store_true", help="evaluate the architecture without its weights")
    p.add_argument("--pretrained-file", help="a weight file to load instead of the registered one")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cpu)")


def add_output_arguments(p: argparse.ArgumentParser) -> None:
    """--no-cache and --json, for the commands that print a protocol's report."""
    p.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")


def run_protocol_command(args: argparse.Namespace, protocol: str, **options: Any) -> int:
    """Run ``protocol`` as ``args`` ask (data, model, --json) with the runner's ``options``; print its report."""
    from .protocols import load_for_eval

    entry = PROTOCOLS[protocol]
    data = entry.open_data(args.data)  # a bad layout is named before a model is built
    loaded = load_for_eval(args.model, random_init=args.random_init, pretrained_file=args.pretrained_file)
    result = entry.run(loaded, data, cache=not args.no_cache, device=args.device, **options)
    print("\n".join(report_lines(result)))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0
