"""``sslzoo publish RUN_DIR --output HUB_DIR [--name NAME]``: a training run -> a hub folder.

Writes, through ``sslzoo.save_pretrained``, the evaluated backbone (momentum encoder or DINO teacher when the method
has one, else the online encoder) as ``model.safetensors`` + ``config.json`` + a model card, and beside them
``full.safetensors``: every tensor of the method (online and momentum/teacher encoders, projector, predictor or DINO
head, DINO centres) for continued pre-training, with the resolved config in its header. The card describes the run
that produced the weights, read from the run folder (config.yaml, log.csv, env.json, checkpoint): method, recipe,
profile and overrides, architecture, data and the number of images trained on, iterations and epochs run, batch,
last logged loss, seed, hardware, time, package versions and git revision; the recipe's own description appears only
as "recipe: ...".
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

import torch

from sslzoo.command_line import CommandParser, report_error
from sslzoo.errors import SslzooError
from sslzoo.files import save_safetensors
from sslzoo.weights.hub_folder import save_pretrained
from .checkpoint import find_checkpoint, load_checkpoint
from .config import parse_yaml
from .frameworks.backbone import build_backbone
from .loop import LOG_NAME
from .methods import build_method

FULL_NAME = "full.safetensors"


class PublishError(SslzooError, FileNotFoundError):
    """A run folder without the files publishing needs."""


def read_run(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(resolved config, env.json, full checkpoint) of a finished run folder."""
    ckpt_path = find_checkpoint(run_dir)
    if ckpt_path is None or not (run_dir / "config.yaml").is_file():
        raise PublishError(f"{run_dir} is not a finished training run (it needs checkpoint.pt and config.yaml from "
                           "sslzoo pretrain).")
    cfg = parse_yaml((run_dir / "config.yaml").read_text(encoding="utf-8"))
    env_path = run_dir / "env.json"
    env = json.loads(env_path.read_text(encoding="utf-8")) if env_path.is_file() else {}
    return cfg, env, load_checkpoint(ckpt_path)


def read_log(run_dir: Path, iteration: int) -> list[dict[str, str]]:
    """The rows of the run's log.csv up to the checkpoint's ``iteration`` (a killed run may have logged beyond it)."""
    path = run_dir / LOG_NAME
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [row for row in csv.DictReader(f) if int(row["iteration"]) <= iteration]


def _planned_iterations(cfg: dict[str, Any], iters_per_epoch: int) -> int:
    return int(cfg["steps"]) if cfg.get("steps") else int(cfg["epochs"]) * iters_per_epoch


def _architecture(cfg: dict[str, Any], backbone: torch.nn.Module | None) -> str:
    name = str(cfg["arch"])
    kwargs = cfg.get("arch_kwargs") or {}
    if kwargs:
        name += " (" + ", ".join(f"{k}={v}" for k, v in kwargs.items()) + ")"
    if backbone is None:
        return name
    size = backbone.patch_embed.img_size
    params = sum(p.numel() for p in backbone.parameters())
    return (f"{name}: ViT, width {backbone.embed_dim}, depth {len(backbone.blocks)}, patch "
            f"{backbone.patch_embed.patch_size[0]}, {size[0]}x{size[1]} px input, {params / 1e6:.2f} M parameters")


def _last_logged(log: list[dict[str, str]]) -> str | None:
    """The last logged loss and the last online kNN top-1, each with its iteration."""
    if not log:
        return None
    last = log[-1]
    text = f"loss {float(last['loss']):.4f} at iteration {last['iteration']}"
    knn = [row for row in log if row.get("knn_top1")]
    if knn:
        text += f"; online kNN top-1 {float(knn[-1]['knn_top1']):.2f} % at iteration {knn[-1]['iteration']}"
    return text


def card_fields(cfg: dict[str, Any], env: dict[str, Any], ckpt: dict[str, Any], log: list[dict[str, str]] = (),
                backbone: torch.nn.Module | None = None) -> dict:
    """The model card of a run: what it trained (config.yaml, checkpoint, log.csv, env.json), never the recipe's
    full-budget description, which appears only as ``recipe: ...``."""
    ipe = int(ckpt["iters_per_epoch"])
    iterations = int(ckpt["iteration"])
    epochs = round(iterations / ipe, 3)
    planned = _planned_iterations(cfg, ipe)
    images = ckpt.get("num_images")
    # train_limit only matters where it cut the folder (a profile's 10000 leaves a small folder whole)
    limit = f" (a seeded subset: train_limit {images})" if images is not None and images == cfg.get("train_limit") else ""
    overrides = cfg.get("overrides")
    substeps = int(log[-1]["step"]) // max(int(log[-1]["iteration"]), 1) if log else 1
    rows = {
        "method": cfg["method"], "recipe": cfg.get("recipe"), "profile": cfg.get("profile") or "none",
        "overrides": " ".join(f"`{o}`" for o in overrides) if overrides else ("none" if overrides is not None
                                                                           else "not recorded"),
        "architecture": _architecture(cfg, backbone), "data": str(cfg["data"]),
        "training images": f"{images:,}{limit}" if images is not None else "not recorded",
        "replaced unreadable images": ckpt.get("replaced_images", "not recorded"),
        "iterations": f"{iterations:,}" + (f" of {planned:,} planned" if planned != iterations else ""),
        "epochs": epochs, "global batch": ckpt.get("global_batch", cfg["batch_size"]),
    }
    if substeps > 1:
        rows["optimizer steps"] = f"{iterations * substeps:,} ({substeps} per iteration)"
    if log:
        rows["last logged"] = _last_logged(log)
    rows.update({
        "seed": cfg["seed"], "world size": ckpt.get("world_size"), "hardware": json.dumps(env.get("hardware")),
        "device": env.get("device"),
    })
    if "wall_clock" in ckpt:
        rows["wall-clock of the training loop (s)"] = round(float(ckpt["wall_clock"]), 1)
        rows["of which in training steps (s)"] = round(float(ckpt["elapsed"]), 1)
    else:  # runs before the loop's wall-clock was recorded
        rows["time in training steps (s)"] = round(float(ckpt["elapsed"]), 1)
    rows.update({"python": env.get("python"), "torch": env.get("torch"), "timm": env.get("timm"),
                 "sslzoo": env.get("sslzoo"), "git revision": env.get("git_revision")})
    table = "| field | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows.items())
    profile = f", profile {cfg['profile']}" if cfg.get("profile") else ""
    count = f"{images:,} images of " if images is not None else ""
    sections = {"Training run": table}
    if cfg.get("description"):
        sections["Recipe"] = (f"recipe: {' '.join(str(cfg['description']).split())}\n\n(The recipe's own settings;"
                              " this run's are in the table above.)")
    sections["Continued pre-training"] = (f"`{FULL_NAME}` holds every tensor of the method (encoders, heads, "
                                         "predictor, momentum encoder or teacher); its header has the config.")
    return {
        "method": cfg["method"],
        "description": f"Pre-trained with `sslzoo pretrain` ({cfg['method']}, recipe {cfg.get('recipe')}{profile}):"
                       f" {cfg['arch']} on {count}{cfg['data']} for {iterations:,} iterations ({epochs} epochs) at"
                       f" global batch {ckpt.get('global_batch', cfg['batch_size'])}.",
        "sections": sections,
    }


def publish(run_dir: str | Path, output: str | Path, *, name: str | None = None, full: bool = True) -> Path:
    """Write the hub folder of a run; returns its path. ``full=False`` leaves out ``full.safetensors``."""
    run_dir, output = Path(run_dir), Path(output)
    cfg, env, ckpt = read_run(run_dir)
    cfg = dict(cfg, device="cpu")
    # the ContrastiveCrop boxes are training state only: the method is rebuilt without them
    method = build_method(cfg, num_images=1, total_epochs=1, device=torch.device("cpu"))
    method.load_state_dict(ckpt["method"])
    evaluated = method.eval_backbone()
    # a fresh backbone, so that requires_grad (a fixed sin-cos position embedding) is the online encoder's
    backbone = build_backbone(cfg["arch"], method=cfg["method"], **(cfg.get("arch_kwargs") or {}))
    backbone.load_state_dict(evaluated.state_dict())
    backbone.pretrained_cfg = dict(method.eval_data_config(backbone), num_classes=0)
    backbone.sslzoo_cfg = dict(name=name or output.name, method=cfg["method"])
    card = card_fields(cfg, env, ckpt, read_log(run_dir, int(ckpt["iteration"])), backbone)
    save_pretrained(backbone.eval(), output, card=card)
    if full:
        metadata = {"config": json.dumps(cfg), "method": cfg["method"], "iteration": str(ckpt["iteration"])}
        save_safetensors(method.state_dict(), output / FULL_NAME, metadata)
    else:
        (output / FULL_NAME).unlink(missing_ok=True)  # never leave a stale one beside new weights
    return output


def parser(prog: str = "sslzoo publish") -> CommandParser:
    """The command line of ``sslzoo publish`` (also read by the documentation's CLI reference)."""
    p = CommandParser(prog=prog, description="Turn a training run into a hub folder.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run folder written by sslzoo pretrain")
    p.add_argument("--output", required=True, help="hub folder to write")
    p.add_argument("--name", help="model name recorded in config.json and the card (default: the folder name)")
    p.add_argument("--no-full", action="store_true", help=f"backbone only: do not write {FULL_NAME}")
    return p


def main(argv: list[str] | None = None, prog: str = "sslzoo publish") -> int:
    """The program (also ``sslzoo publish``); returns its exit status."""
    args = parser(prog).parse_args(argv)
    try:
        out = publish(args.run_dir, args.output, name=args.name, full=not args.no_full)
    except SslzooError as e:
        return report_error(prog, e)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
