"""A registry entry's weight file: looked for in each of its sources in turn, or a message that says what to do.

The sources and their order are :mod:`sslzoo.weights.sources`. The file found is then checked against the
registry's pinned sha256, or for an entry that publishes none against the pin taken on its first verified load
(:mod:`sslzoo.weights.pins`), on every load (:mod:`sslzoo.weights.registered`).
"""

from __future__ import annotations

from pathlib import Path

from .. import registry
from ..errors import WeightsNotFoundError
from ..cache import cache_dir
from .local_hubs import entry_dir
from .sources import Found, sources_for


def locate_registered(resolved: registry.Resolved) -> Found:
    """Find the weight file of a registry entry, following the resolution order. Returns (path, source)."""
    if resolved.weights is None:
        raise WeightsNotFoundError(no_weights_message(resolved, []))
    tried = []
    for source in sources_for(resolved):
        try:
            found = source.locate()
        except WeightsNotFoundError as e:
            tried.append(source.tried(e))
            continue
        if found is not None:
            return found
    raise WeightsNotFoundError(no_weights_message(resolved, tried))


def cached_copies(resolved: registry.Resolved) -> list[Path]:
    """Every local copy of an entry's weight file (local hubs, the Hugging Face cache, sslzoo's download cache)."""
    return [path for source in sources_for(resolved) if (path := source.cached()) is not None]


def no_weights_message(resolved: registry.Resolved, tried: list[str]) -> str:
    arch = resolved.architecture
    method = arch.method
    lines = [f"No pretrained weights could be found for '{resolved.name}' ({resolved.full_name})."]
    if tried:
        lines += ["Looked in:"] + [f"  - {t}" for t in tried]
    else:
        lines.append("sslzoo has no published weights for this architecture yet.")
    lines.append("What you can do:")
    w = resolved.weights
    if w is not None and w.convert_from:
        lines += _release_instructions(resolved, w)
    else:
        lines.append(
            f"  - pass a file: sslzoo.create_model('{resolved.name}', pretrained_file='model.safetensors')"
            " (a timm-layout state dict; safetensors or a weights-only pickle);"
        )
    if method.release and not (w and w.convert_from):
        lines.append(
            f"  - convert the authors' release ({method.release}) with `sslzoo convert --from {method.name} FILE OUT_DIR`"
            " and load 'local-dir:OUT_DIR';"
        )
    if w and w.convert_from:
        lines.append(f"  - for offline use, put the folder that `sslzoo convert` wrote at"
                     f" $SSLZOO_HUB/{entry_dir(resolved)}/;")
    elif w:
        lines.append(f"  - put the published folder at $SSLZOO_HUB/{entry_dir(resolved)}/ (offline use), or fetch it"
                     " with `sslzoo download`;")
    lines += [
        f"  - train one: sslzoo pretrain --method {method.name} --arch {arch.name} --data PATH;",
        "  - see which names have weights: `sslzoo list --pretrained`.",
    ]
    return "\n".join(lines)


def _release_instructions(resolved: registry.Resolved, w: registry.Weights) -> list[str]:
    """How to get an entry whose file is the authors' release in an upstream layout, converted on first load."""
    repo = f"https://huggingface.co/{w.hf_hub_id}" if w.hf_hub_id else (w.url or resolved.architecture.method.release)
    if w.hf_filename:
        where = f"{repo}/blob/main/{w.hf_filename} (if it has moved, browse {repo}/tree/main)"
    else:
        where = f"{repo}/tree/main (not a fine-tuned best.pth: that is a pickled model, which sslzoo refuses to read)"
    return [
        f"  - download {w.description} from {where};",
        f"  - pass it: sslzoo.create_model('{resolved.name}', pretrained_file='FILE.pth'); it is converted from the"
        f" {w.convert_from} layout on first use and cached in {cache_dir() / 'converted'};",
        f"  - or convert it once: `sslzoo convert --from {w.convert_from} FILE.pth OUT_DIR`, then"
        " sslzoo.create_model('local-dir:OUT_DIR');",
    ]
