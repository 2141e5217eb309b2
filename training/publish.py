"""``python -m training.publish RUN_DIR --output HUB_DIR [--name NAME]``: a training run -> a hub folder.

Writes, through ``sslzoo.save_pretrained``, the evaluated backbone (momentum encoder or DINO teacher when the method
has one, else the online encoder) as ``model.safetensors`` + ``config.json`` + a model card, and beside them
``full.safetensors``: every tensor of the method (online and momentum/teacher encoders, projector, predictor or DINO
head, DINO centres) for continued pre-training, with the resolved config in its header. The card records the
method, recipe, data, epochs, seed, hardware, wall-clock, package versions and git revision of the run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch

from sslzoo.command_line import CommandParser, report_error
from sslzoo.errors import SslzooError
from sslzoo.files import save_safetensors
from sslzoo.hub_folder import save_pretrained
from .checkpoint import find_checkpoint, load_checkpoint
from .config import parse_yaml
from .frameworks.backbone import build_backbone
from .methods import build_method

FULL_NAME = "full.safetensors"


class PublishError(SslzooError, FileNotFoundError):
    """A run folder without the files publishing needs."""


def read_run(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(resolved config, env.json, full checkpoint) of a finished run folder."""
    ckpt_path = find_checkpoint(run_dir)
    if ckpt_path is None or not (run_dir / "config.yaml").is_file():
        raise PublishError(f"{run_dir} is not a finished training run (it needs checkpoint.pt and config.yaml from "
                           "python -m training.pretrain).")
    cfg = parse_yaml((run_dir / "config.yaml").read_text(encoding="utf-8"))
    env_path = run_dir / "env.json"
    env = json.loads(env_path.read_text(encoding="utf-8")) if env_path.is_file() else {}
    return cfg, env, load_checkpoint(ckpt_path)


def card_fields(cfg: dict[str, Any], env: dict[str, Any], ckpt: dict[str, Any], iters_per_epoch: int) -> dict:
    """The model card: provenance of the run as a table section."""
    epochs = ckpt["iteration"] / iters_per_epoch
    rows = {
        "method": cfg["method"], "recipe": cfg.get("recipe"), "profile": cfg.get("profile"),
        "architecture": cfg["arch"], "data": str(cfg["data"]), "training images": cfg.get("train_limit") or "all",
        "epochs": round(epochs, 3), "iterations": ckpt["iteration"], "global batch": cfg["batch_size"],
        "seed": cfg["seed"], "world size": ckpt.get("world_size"), "hardware": json.dumps(env.get("hardware")),
        "device": env.get("device"), "wall-clock (s)": round(float(ckpt["elapsed"]), 1),
        "python": env.get("python"), "torch": env.get("torch"), "timm": env.get("timm"),
        "sslzoo": env.get("sslzoo"), "git revision": env.get("git_revision"),
    }
    table = "| field | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows.items())
    return {
        "method": cfg["method"],
        "description": f"Pre-trained with `python -m training.pretrain` ({cfg['method']}, recipe {cfg.get('recipe')})"
                       f" for {round(epochs, 3)} epochs. {cfg.get('description') or ''}".strip(),
        "sections": {"Training run": table,
                     "Continued pre-training": f"`{FULL_NAME}` holds every tensor of the method (encoders, heads, "
                                               "predictor, momentum encoder or teacher); its header has the config."},
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
    save_pretrained(backbone.eval(), output, card=card_fields(cfg, env, ckpt, int(ckpt["iters_per_epoch"])))
    if full:
        metadata = {"config": json.dumps(cfg), "method": cfg["method"], "iteration": str(ckpt["iteration"])}
        save_safetensors(method.state_dict(), output / FULL_NAME, metadata)
    else:
        (output / FULL_NAME).unlink(missing_ok=True)  # never leave a stale one beside new weights
    return output


def main(argv: list[str] | None = None, prog: str = "python -m training.publish") -> int:
    """The program (also ``sslzoo publish``); returns its exit status."""
    p = CommandParser(prog=prog, description="Turn a training run into a hub folder.")
    p.add_argument("run_dir")
    p.add_argument("--output", required=True, help="hub folder to write")
    p.add_argument("--name", help="model name recorded in config.json and the card (default: the folder name)")
    p.add_argument("--no-full", action="store_true", help=f"backbone only: do not write {FULL_NAME}")
    args = p.parse_args(argv)
    try:
        out = publish(args.run_dir, args.output, name=args.name, full=not args.no_full)
    except SslzooError as e:
        return report_error(prog, e)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
