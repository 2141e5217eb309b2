"""Write a converted checkpoint as sslzoo's hub folder, with a card that says where it came from and what was assumed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import torch

from ... import registry
from ...registry.layouts import TITLES
from ...files import save_safetensors
from ..local_hubs import FULL_WEIGHTS_NAME
from ..hub_folder import save_pretrained
from .vit import Converted



def registry_architecture(method: str, model: torch.nn.Module) -> Optional[str]:
    """The registry architecture that the converted model is, if it is one (same method, size and resolution)."""
    heads = model.blocks[0].attn.num_heads
    for arch in registry.ARCHITECTURES.values():
        a = arch.model_args
        if (
            arch.method.name == method
            and (a["embed_dim"], a["depth"], a["num_heads"], a["patch_size"], a["img_size"], a["qkv_bias"])
            == (model.embed_dim, len(model.blocks), heads, model.patch_embed.patch_size[0],
                model.patch_embed.img_size[0], model.blocks[0].attn.qkv.bias is not None)
        ):
            return arch.name
    return None


def _unshared(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Tensors that safetensors can write: a tensor sharing storage with another (a view, a tied weight) is copied."""
    seen: set[int] = set()
    out = {}
    for key, value in tensors.items():
        storage = value.untyped_storage()
        ptr = storage.data_ptr()
        owns = value.storage_offset() == 0 and value.numel() * value.element_size() == storage.nbytes()
        out[key] = value if owns and ptr not in seen else value.clone()
        seen.add(ptr)
    return out


def _prefixes(keys: list[str]) -> str:
    groups: dict[str, int] = {}
    for key in keys:
        head = ".".join(key.split(".")[:2]) if key.startswith("module.") else key.split(".")[0]
        groups[head] = groups.get(head, 0) + 1
    return ", ".join(f"`{g}.*` ({n})" for g, n in groups.items())


def _card(converted: Converted, name: str, wrote_full: bool) -> dict[str, Any]:
    title = TITLES[converted.layout]
    source = [
        f"- layout: `{converted.layout}` ({title})",
        f"- file: `{converted.source_name or '(an in-memory checkpoint)'}`",
        f"- sha256: `{converted.source_sha256 or 'unknown (converted from an object, not a file)'}`",
        f"- backbone taken from: `{converted.encoder}` ({len(converted.backbone_keys)} tensors)",
    ]
    if converted.extra_keys:
        source.append(f"- other tensors: {_prefixes(converted.extra_keys)}")
    sections = {
        "Source checkpoint": "\n".join(source),
        "Conversion notes": "\n".join(f"- {n}" for n in converted.notes),
    }
    if wrote_full:
        sections["Full checkpoint"] = (
            f"`{FULL_WEIGHTS_NAME}` holds every tensor of the source checkpoint under the authors' key names (encoders,"
            " projector, predictor, heads, loss centers), for continued pre-training; optimizer state is not kept."
        )
    return dict(
        title=f"{name} (converted from the authors' {title} checkpoint)",
        description=(
            f"A timm VisionTransformer converted by `sslzoo convert --from {converted.layout}`. Its outputs equal those"
            " of the upstream model on the same input; the weights' licence is that of their source (see the authors'"
            " repository)."
        ),
        method=converted.method,
        licence="other",
        tags=["converted"],
        sections=sections,
    )


def write_converted(
    converted: Converted, out_dir: os.PathLike, *, name: Optional[str] = None, write_full: bool = True
) -> Path:
    """Write ``model.safetensors``, ``config.json`` and ``README.md`` (and ``full.safetensors`` when the source
    has heads, predictors or another encoder) into ``out_dir``. Writing the same conversion twice gives the same bytes.

    Args:
        name: the model's name in its config and card; by default its registry architecture, else the folder's name.
    """
    out_dir = Path(out_dir)
    model = converted.model
    arch = registry_architecture(converted.method, model)
    name = name or arch or out_dir.name
    model.pretrained_cfg = dict(converted.preprocessing, input_size=(3, *model.patch_embed.img_size))
    model.sslzoo_cfg = dict(
        name=name,
        architecture=arch,
        method=converted.method,
        converted_from=dict(
            layout=converted.layout,
            file=converted.source_name,
            sha256=converted.source_sha256,
            encoder=converted.encoder,
        ),
    )
    full = write_full and bool(converted.extra_keys)
    save_pretrained(model, out_dir, card=_card(converted, name, full))
    full_path = out_dir / FULL_WEIGHTS_NAME
    if full:
        metadata = {
            "format": "pt",
            "sslzoo_layout": converted.layout,
            "sslzoo_encoder": converted.encoder,
            "source_file": converted.source_name or "",
            "source_sha256": converted.source_sha256 or "",
        }
        save_safetensors(_unshared(converted.source_tensors), full_path, metadata)
    else:
        full_path.unlink(missing_ok=True)  # never leave the full checkpoint of an earlier conversion beside this one
    return out_dir
