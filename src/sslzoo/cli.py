"""The ``sslzoo`` command. Every sub-command has ``--help``; user errors exit with status 2 and a one-line message.

Only the registry (plain data) is imported up front: ``--help``, ``list`` and ``info`` never load torch, and each other
command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

from . import registry
from .command_line import EXIT_FAILED, EXIT_USAGE, CommandParser, report_error  # noqa: F401 - EXIT_USAGE: cli.EXIT_*
from .errors import SslzooError
from .eval.commands import add_eval_commands
from .notices import show_notices
from .registry.layouts import LAYOUT_NAMES
from .validation import InvalidOptionError

EXIT_OK = 0

# Programs other installed packages add as sub-commands (``[project.entry-points."sslzoo.commands"]``): the training
# programs sit above the library in the import flow, so the library finds them by name instead of importing them.
# Each entry point is ``main(argv, prog=...) -> exit status`` and parses its own arguments.
COMMAND_GROUP = "sslzoo.commands"
_COMMAND_HELP = {
    "pretrain": "self-supervised pre-training from a recipe (see `sslzoo pretrain --help`)",
    "publish": "turn a training run into a hub folder with a model card (see `sslzoo publish --help`)",
}


def plugin_commands() -> dict:
    """name -> entry point of the installed sub-commands of :data:`COMMAND_GROUP`."""
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=COMMAND_GROUP)}


def _cmd_list(args: argparse.Namespace) -> int:
    names = registry.list_models(args.pattern or "*", pretrained=args.pretrained, include_aliases=args.aliases)
    if args.json:
        print(json.dumps(names, indent=2))
    elif not names:
        what = "pretrained weights" if args.pretrained else "models"
        print(f"No {what} match '{args.pattern or '*'}'.", file=sys.stderr)
        return EXIT_FAILED
    elif args.details:
        for name in names:
            print(_details(name))
    else:
        print("\n".join(names))
    return EXIT_OK


def _details(name: str) -> str:
    """One line per weights: name, source, figures (measured or reported), licence."""
    from .published import weights_figures, weights_source

    resolved = registry.resolve(name)
    w = resolved.weights
    if w is None:
        return name
    return "\t".join([resolved.full_name, weights_source(w), weights_figures(w) or "-", w.licence])


def _cmd_info(args: argparse.Namespace) -> int:
    info = registry.model_info(args.name)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return EXIT_OK
    method = info["method"]
    args_txt = ", ".join(f"{k}={v}" for k, v in info["model_args"].items())
    lines = [
        f"name:         {info['name']}",
        f"architecture: {info['architecture']}" + (f"  (aliases: {', '.join(info['aliases'])})" if info["aliases"] else ""),
        f"method:       {method['name']} - {method['title']} (arXiv:{method['arxiv']})",
        f"framework:    {method['framework']}",
        f"model args:   {args_txt}, norm_eps={info['norm_eps']}, pos_embed={info['pos_embed']}",
        f"tags:         {', '.join(info['tags']) or 'none yet (no published weights)'}",
    ]
    w = info["weights"]
    if w:
        source = w["hub_dir"] or (f"hf-hub:{w['hf_hub_id']}/{w['hf_filename'] or w['filename']}" if w["hf_hub_id"] else w["url"])
        if w["convert_from"] and w["hf_hub_id"] and not w["hf_filename"]:
            source = f"hf-hub:{w['hf_hub_id']} (file name not known: download it and pass pretrained_file=)"
        lines += [
            f"weights:      {w['tag']}: {w['description']}",
            f"  data:       {w['pretrain_data']}, {w['pretrain_epochs']} epochs",
            f"  source:     {source or info['name']}",
        ]
        if w["convert_from"]:
            lines.append(f"  converted:  from the authors' {w['convert_from']} layout on first load, then cached")
        lines += [f"  sha256:     {_pin_text(info['name'], w)}", f"  licence:    {w['licence']}"]
        for r in w["results"]:
            lines.append(f"  result:     {r['dataset']} {r['protocol']} {r['metric']} = {r['value']:.2f} ({r['source']})")
    elif method["release"]:
        lines.append(f"release:      the authors' weights: {method['release']} (convert with `sslzoo convert`)")
    print("\n".join(lines))
    return EXIT_OK


def _pin_text(full_name: str, w: dict) -> str:
    if w["sha256"]:
        return f"{w['sha256']} (published)"
    from .weights.pins import first_use_pin

    pin = first_use_pin(full_name)
    if pin is None:
        return "not pinned yet: the first verified load pins it (none is published)"
    revision = f", revision {pin['revision']}" if pin.get("revision") else ""
    return f"{pin['sha256']} (pinned on first use, {pin['date']}, from {pin['source']}{revision})"


def _cmd_download(args: argparse.Namespace) -> int:
    from .weights.registered import load_registered_weights

    for name in args.names:
        resolved = registry.resolve(name)
        loaded = load_registered_weights(resolved)  # located, verified against its pin (or pinned), converted
        print(f"{resolved.full_name}: {loaded.path} ({loaded.source}, sha256 {loaded.sha256[:16]}…)")
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace) -> int:
    from . import files
    from .weights.locate import cached_copies
    from .weights.pins import first_use_pin, forget_pin

    if args.repin:
        if not args.names:
            raise InvalidOptionError("--repin needs the names to re-pin: sslzoo verify --repin NAME [NAME ...]")
        from .weights.registered import load_registered_weights

        for name in args.names:
            resolved = registry.resolve(name)
            if resolved.weights is not None and resolved.weights.sha256:
                raise InvalidOptionError(f"{resolved.full_name} has a published sha256, which cannot be re-pinned.")
            forget_pin(resolved.full_name)
            loaded = load_registered_weights(resolved)
            print(f"{resolved.full_name}: re-pinned to sha256 {loaded.sha256} ({loaded.source})")
        return EXIT_OK
    names = args.names or registry.list_models(pretrained=True)
    status = EXIT_OK
    uncached = 0
    for name in names:
        resolved = registry.resolve(name)
        copies = cached_copies(resolved)
        if not copies:
            uncached += 1
            if args.names:  # every entry was asked for: only the named ones are worth a line each
                print(f"{resolved.full_name}: not cached")
            continue
        w, pin = resolved.weights, first_use_pin(resolved.full_name)
        pinned = (w.sha256 if w else None) or (pin["sha256"] if pin else None)
        for path in copies:
            actual = files.sha256_file(path)
            if not pinned:
                print(f"{resolved.full_name}: {path}: sha256 {actual} (not pinned)")
            elif actual == pinned:
                print(f"{resolved.full_name}: {path}: OK")
            else:
                print(f"{resolved.full_name}: {path}: MISMATCH (sha256 {actual}, pinned {pinned})")
                status = EXIT_FAILED
    if uncached and not args.names:
        print(f"({uncached} of {len(names)} pretrained entries are not cached)", file=sys.stderr)
    return status


def _cmd_convert(args: argparse.Namespace) -> int:
    from .weights.convert import convert, write_converted

    converted = convert(args.input, args.layout, num_heads=args.num_heads, encoder=args.encoder)
    out = write_converted(converted, args.out_dir, write_full=not args.no_full)
    model = converted.model
    print(
        f"{args.input}: {converted.layout} checkpoint (sha256 {converted.source_sha256}), backbone from"
        f" '{converted.encoder}'"
    )
    print(
        f"  ViT: width {model.embed_dim}, depth {len(model.blocks)}, heads {model.blocks[0].attn.num_heads},"
        f" patch {model.patch_embed.patch_size[0]}, image {model.patch_embed.img_size[0]},"
        f" qkv bias {model.blocks[0].attn.qkv.bias is not None}, LayerNorm eps {converted.norm_eps:g},"
        f" position embedding {converted.pos_embed}"
    )
    for note in converted.notes:
        print(f"  note: {note}")
    written = sorted(p.name for p in out.iterdir() if p.is_file())
    print(f"wrote {out}: {', '.join(written)}")
    print(f"load it with sslzoo.create_model('local-dir:{out}')")
    return EXIT_OK


def _cmd_attention(args: argparse.Namespace) -> int:
    from .attention import attention_figure
    from .eval.protocols import load_for_eval

    loaded = load_for_eval(args.model, random_init=args.random_init, pretrained_file=args.pretrained_file)
    figure = attention_figure(loaded.model, args.image, block=args.block, scale=args.scale)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.save(output)
    heads = loaded.model.blocks[args.block].attn.num_heads
    print(f"{output}: CLS attention of block {args.block} ({heads} heads) of {loaded.name}, {loaded.weights},"
          f" for {len(args.image)} image(s)")
    return EXIT_OK


def build_parser(plugins: Optional[dict] = None) -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="sslzoo",
        description="Self-supervised ViTs by name: list, inspect, fetch, verify and evaluate checkpoints.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("list", help="list model names (wildcards allowed)")
    p.add_argument("pattern", nargs="?", help="fnmatch pattern, e.g. 'aps_*' or '*_patch2_32'")
    p.add_argument("--pretrained", action="store_true", help="only names with weights, with their tags")
    p.add_argument("--aliases", action="store_true", help="also list short aliases such as aps_vit_t")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.add_argument("--details", action="store_true", help="with each name: its source, figures and licence")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("info", help="show what the registry knows about a name")
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("download", help="fetch weights into the local caches for offline use, and verify them")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.set_defaults(func=_cmd_download)

    p = sub.add_parser("verify", help="re-hash cached weight files against their pinned sha256")
    p.add_argument("names", nargs="*", metavar="NAME", help="default: every pretrained entry")
    p.add_argument("--repin", action="store_true",
                   help="drop the pins taken on first use of NAME... and pin the files found now (on purpose)")
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser(
        "convert",
        help="convert an authors' checkpoint (APS, PatchMix, ADCLR/PQCL, DINO, MoCo v3) into a hub folder",
        description="Convert a released or training checkpoint into sslzoo's hub folder (model.safetensors, config.json,"
        " README.md, and full.safetensors with the heads). Files are read without executing pickled code.",
    )
    p.add_argument("--from", dest="layout", default="auto", choices=["auto", *LAYOUT_NAMES],
                   help="the checkpoint's layout (default: recognised from its keys)")
    p.add_argument("input", metavar="IN", help="the checkpoint file (.pth / .pth.tar / .safetensors)")
    p.add_argument("out_dir", metavar="OUT_DIR", help="the hub folder to write")
    p.add_argument("--num-heads", type=int, help="attention heads, when the layout's convention for the width is wrong")
    p.add_argument("--encoder", choices=["base_encoder", "momentum_encoder", "teacher", "student"],
                   help="which sub-model to convert (default: the one the authors evaluate)")
    p.add_argument("--no-full", action="store_true", help="do not write full.safetensors (heads, predictor, encoders)")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("attention", help="draw the CLS-to-patch attention of each head on images (PNG)",
                       description="One row per image: the image as the model sees it, then the last block's"
                       " class-token attention over the patches for every head (min-max scaled per head).")
    p.add_argument("--model", required=True, help="registry name (with tag), timm name or local-dir:PATH")
    p.add_argument("--image", required=True, action="append", help="an image file (repeat for several rows)")
    p.add_argument("--output", required=True, help="the PNG to write")
    p.add_argument("--block", type=int, default=-1, help="which block's attention (default: the last)")
    p.add_argument("--scale", type=int, default=4, help="pixel magnification (default 4)")
    p.add_argument("--random-init", action="store_true", help="use the architecture at random init")
    p.add_argument("--pretrained-file", help="load weights from this file or hub folder")
    p.set_defaults(func=_cmd_attention)

    add_eval_commands(sub)
    for name in sorted(plugin_commands() if plugins is None else plugins):  # in --help; main() hands their args over
        sub.add_parser(name, help=_COMMAND_HELP.get(name, f"see sslzoo {name} --help"), add_help=False)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    plugins = plugin_commands()
    if argv and argv[0] in plugins:
        return plugins[argv[0]].load()(argv[1:], prog=f"sslzoo {argv[0]}")
    show_notices()
    parser = build_parser(plugins)
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except SslzooError as e:
        return report_error(f"sslzoo {args.command}", e)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
