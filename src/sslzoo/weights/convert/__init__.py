"""Convert the authors' released checkpoints into sslzoo's format (timm ``VisionTransformer`` hub folders).

One module per upstream layout: :mod:`.aps`, :mod:`.patchmix`, :mod:`.dino` (DINO and ADCLR/PQCL) and :mod:`.mocov3`.
Each recognises its layout from the keys, takes the backbone, and infers the architecture from the tensors; what the
tensors cannot tell (LayerNorm eps, head count) follows the layout's convention and is written in the card.
Checkpoints are read with ``torch.load(weights_only=True)``: a file that holds pickled code is refused, never run.

Example::

    from sslzoo.weights.convert import convert_file
    convert_file("vit-small-800-94.6.pth", "out/")      # layout recognised from the keys
    sslzoo.create_model("local-dir:out/")                  # the same features as the authors' model
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
from pathlib import Path
from typing import Any, Optional, Union

import torch

from ...errors import CheckpointFormatError, SslzooError, UnsafeCheckpointError
from ...files import load_checkpoint, sha256_file
from ...registry.layouts import LAYOUT_NAMES, TITLES, same_family
from ...registry.layouts import LAYOUTS as _ROWS
from .folder import write_converted
from .vit import Converted

__all__ = ["LAYOUTS", "Converted", "convert", "convert_file", "detect_layout", "read_checkpoint", "write_converted"]

# one converter module per row of the layouts table (sslzoo.registry.layouts), in the table's order of recognition
_BY_LAYOUT = {row.name: importlib.import_module(f".{row.converter}", __name__) for row in _ROWS}
_MODULES = tuple(dict.fromkeys(_BY_LAYOUT.values()))
_logger = logging.getLogger(__name__)
LAYOUTS: tuple[str, ...] = LAYOUT_NAMES
TIMM = "timm"  # what detect_layout() calls a backbone that is already in timm names (nothing to convert)

_PICKLED_MODEL_HELP = (
    "{path} holds pickled Python objects, not only tensors. The authors' fine-tuned files (APS best.pth, PatchMix"
    " linear/fine-tune files) are whole models saved with torch.save(model); reading them would run code from the"
    " file, which sslzoo never does. Convert the pre-training checkpoint instead, or, only if you trust the file, turn"
    " it into a state dict in an environment where the authors' code is importable:\n"
    "    python -c \"import torch; m = torch.load('{path}', weights_only=False); torch.save(m.state_dict(), 'sd.pth')\"\n"
    "and convert that: `sslzoo convert --from auto sd.pth OUT_DIR`."
)


def read_checkpoint(path: Union[str, os.PathLike]) -> Any:
    """Read an upstream checkpoint without executing code (``argparse.Namespace`` args, as DINO saves, are allowed).

    Raises:
        UnsafeCheckpointError: the file holds pickled objects (e.g. a whole model); the message says what to do.
        CheckpointFormatError: the file is truncated or not a checkpoint.
    """
    # A Namespace is rebuilt from its attribute dict, which the weights-only unpickler still restricts to plain data.
    with torch.serialization.safe_globals([argparse.Namespace]):
        try:
            return load_checkpoint(path)
        except UnsafeCheckpointError as e:
            raise UnsafeCheckpointError(_PICKLED_MODEL_HELP.format(path=path)) from e


def _is_timm_backbone(obj: Any) -> bool:
    return isinstance(obj, dict) and "patch_embed.proj.weight" in obj and "blocks.0.attn.qkv.weight" in obj


def _describe(obj: Any) -> str:
    if not isinstance(obj, dict):
        return f"a {type(obj).__name__}"
    keys = list(obj)
    inner = obj.get("state_dict")
    more = f"; its state_dict starts with {list(inner)[:4]}" if isinstance(inner, dict) else ""
    return f"a dict with keys {keys[:6]}{' ...' if len(keys) > 6 else ''}{more}"


def _recognised(obj: Any) -> list[str]:
    return [layout for module in _MODULES if (layout := module.recognise(obj))]


def detect_layout(obj: Any) -> str:
    """The layout of a loaded checkpoint: one of :data:`LAYOUTS`, or ``"timm"`` for a backbone already in timm names.

    Raises:
        CheckpointFormatError: no known layout matches; the message says what the checkpoint holds.
    """
    found = _recognised(obj)
    if found:
        return found[0]
    if _is_timm_backbone(obj):
        return TIMM
    raise CheckpointFormatError(
        f"This checkpoint matches none of the known layouts ({', '.join(LAYOUTS)}); it is {_describe(obj)}."
    )


def _check_layout(obj: Any, layout: str) -> str:
    """The layout to convert ``obj`` with, or a clear error when it is not in the one asked for."""
    if layout not in LAYOUTS and layout != "auto":
        raise SslzooError(f"Unknown layout '{layout}'; choose one of: auto, {', '.join(LAYOUTS)}.")
    if layout != "auto" and _BY_LAYOUT[layout].recognise(obj):
        return layout
    found = _recognised(obj)
    # a layout of the same family holds the same containers: an explicit --from of one converts the other's files,
    # with a notice, because the tensors fit whichever name the user gives
    kin = [f for f in found if layout != "auto" and same_family(f, layout)]
    if kin:
        _logger.warning("--from %s: this checkpoint looks like the %s layout; it is converted as %s, as asked (both"
                        " hold the same state dicts; the converter checks every tensor).", layout, TITLES[kin[0]],
                        TITLES[layout])
        return layout
    if layout == "auto" and found:
        return found[0]
    if not found and _is_timm_backbone(obj):
        raise CheckpointFormatError(
            "This checkpoint is already a backbone in timm names (for instance sslzoo's own model.safetensors): there is"
            " nothing to convert. Load it with sslzoo.create_model(NAME, pretrained_file=FILE), or its folder with"
            " sslzoo.create_model('local-dir:DIR')."
        )
    if layout == "auto":
        detect_layout(obj)  # raises, describing the checkpoint
    seen = f"it looks like the {TITLES[found[0]]} layout: use --from {found[0]}" if found else f"it is {_describe(obj)}"
    raise CheckpointFormatError(
        f"This checkpoint is not in the {TITLES[layout]} layout, which is {_BY_LAYOUT[layout].EXPECTED}; {seen}"
        " (or --from auto)."
    )


def convert(
    obj_or_path: Any, layout: str = "auto", *, num_heads: Optional[int] = None, encoder: Optional[str] = None
) -> Converted:
    """Convert an upstream checkpoint (a loaded object, or a file path) into a timm ViT.

    Args:
        obj_or_path: what ``torch.load`` returned, or the path of the file (read without executing code).
        layout: ``auto`` (recognised from the keys) or one of :data:`LAYOUTS`.
        num_heads: the attention head count, when the layout's convention for this width does not apply.
        encoder: which sub-model to take (``base_encoder``/``momentum_encoder``, ``teacher``/``student``); by default
            the one the authors evaluate.

    Raises:
        CheckpointFormatError: the checkpoint is not in ``layout`` (the message names the layout it is in), is
            truncated, or its backbone is incomplete.
        UnsafeCheckpointError: the file holds pickled code.
    """
    source_name = source_sha256 = None
    if isinstance(obj_or_path, (str, os.PathLike)):
        path = Path(obj_or_path)
        if path.is_dir():
            raise CheckpointFormatError(
                f"{path} is a folder; pass the checkpoint file. A folder written by `sslzoo convert` is already"
                " converted: load it with sslzoo.create_model('local-dir:...')."
            )
        obj = read_checkpoint(path)
        source_name, source_sha256 = path.name, sha256_file(path)
    else:
        obj = obj_or_path
    layout = _check_layout(obj, layout)
    converted = _BY_LAYOUT[layout].convert(obj, layout=layout, num_heads=num_heads, encoder=encoder)
    converted.source_name, converted.source_sha256 = source_name, source_sha256
    return converted


def convert_file(
    path: Union[str, os.PathLike],
    out_dir: Union[str, os.PathLike],
    *,
    layout: str = "auto",
    num_heads: Optional[int] = None,
    encoder: Optional[str] = None,
    write_full: bool = True,
) -> Path:
    """Convert the checkpoint at ``path`` and write its hub folder to ``out_dir`` (see :func:`write_converted`).

    ``sslzoo.create_model(f"local-dir:{out_dir}")`` then rebuilds the model exactly.
    """
    return write_converted(convert(path, layout, num_heads=num_heads, encoder=encoder), out_dir, write_full=write_full)
