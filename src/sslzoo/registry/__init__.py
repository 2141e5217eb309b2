"""The model registry: names, aliases, tags and pretrained-weight records.

Everything here is data. A model name is ``{method}_vit_{size}_patch{p}_{img}``, optionally followed by
``.{tag}`` naming one set of weights (timm's convention). Short aliases (``aps_vit_t``) name an architecture
whose default tag (its first) is used when weights are asked for.

The architecture arguments differ between the methods' official models (qkv bias, LayerNorm eps, position
embedding, ViT-S head count); ``METHODS`` records them so that converted official checkpoints load exactly
and the project's own checkpoints match the papers' models.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import asdict
from typing import Any, Iterable, Optional, Sequence, Union

from ..errors import UnknownModelError
from ..preprocessing import CIFAR10_MEAN, CIFAR10_STD, CIFAR_CROP_PCT, IMAGENET_MEAN, IMAGENET_STD  # noqa: F401
from .architectures import (ALIASES, ARCHITECTURES, METHODS, MICRO, MICRO_RESOLUTION, PLAIN_VIT,  # noqa: F401
                            RESOLUTIONS, SIZES)
from .baselines import BASELINES
from .releases import APS_CIFAR_STD, RELEASES  # noqa: F401
from .schema import Architecture, Method, PosEmbed, Resolution, Resolved, Result, Size, Weights  # noqa: F401
from .zoo_index import ZOO_INDEX, zoo_entries, zoo_weights  # noqa: F401


def weights_table() -> dict[str, tuple[Weights, ...]]:
    """Pretrained weights per architecture (``registry.WEIGHTS``); the first entry of each is the default tag.

    Built on first use, so importing the registry reads no file. The zoo's own checkpoints go first, so that aliases
    such as ``aps_vit_b`` resolve to them rather than to the authors' files.
    """
    table = globals().get("WEIGHTS")
    if table is None:
        table = dict(RELEASES, **BASELINES)
        for arch, zoo in zoo_weights().items():
            table[arch] = zoo + table.get(arch, ())
        globals()["WEIGHTS"] = table
    return table


def __getattr__(name: str) -> Any:
    if name == "WEIGHTS":
        return weights_table()
    raise AttributeError(f"module 'sslzoo.registry' has no attribute {name!r}")


def vit_args(method: Optional[str], size: Size, *, patch_size: int, img_size: int) -> tuple[dict[str, Any], float,
                                                                                                PosEmbed]:
    """The ``VisionTransformer`` arguments, LayerNorm eps and position embedding of ``method``'s official ViT.

    Any size works, including training-only ones that are not registered; ``method=None`` gives a plain timm ViT.
    This is the rule every architecture of the registry is built by (:attr:`Architecture.model_args`).
    """
    spec = METHODS[method] if method else PLAIN_VIT
    arch = Architecture(spec, size, Resolution(patch_size, img_size, CIFAR_CROP_PCT, CIFAR10_MEAN, CIFAR10_STD))
    return arch.model_args, spec.norm_eps, spec.pos_embed


def split_tag(name: str) -> tuple[str, Optional[str]]:
    """``"aps_vit_tiny_patch2_32.cifar10"`` -> ``("aps_vit_tiny_patch2_32", "cifar10")``."""
    arch, _, tag = name.partition(".")
    return arch, tag or None


def all_names(*, with_tags: bool = True, with_aliases: bool = True) -> list[str]:
    """Every name the registry accepts, for listings and suggestions."""
    names = list(ARCHITECTURES)
    if with_tags:
        names += [f"{arch}.{w.tag}" for arch, ws in weights_table().items() for w in ws]
    if with_aliases:
        names += list(ALIASES)
    return sorted(names)


def suggest(name: str, n: int = 5) -> list[str]:
    """The registry names closest to ``name``."""
    arch, _ = split_tag(name)
    candidates = all_names()
    close = difflib.get_close_matches(name, candidates, n=n, cutoff=0.6)
    if len(close) < n:
        close += [c for c in difflib.get_close_matches(arch, candidates, n=n, cutoff=0.6) if c not in close]
    return close[:n]


def is_registered(name: str) -> bool:
    arch, _ = split_tag(name)
    return arch in ARCHITECTURES or arch in ALIASES


def resolve(name: str) -> Resolved:
    """Resolve a registry name or alias, with an optional tag.

    Raises:
        UnknownModelError: the name, or its tag, is not registered; the message lists the closest names.
    """
    arch_name, tag = split_tag(name)
    arch_name = ALIASES.get(arch_name, arch_name)
    if arch_name not in ARCHITECTURES:
        close = suggest(name)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownModelError(
            f"Unknown model '{name}'.{hint} Run `sslzoo list` (or sslzoo.list_models()) for every name; "
            "any timm ViT name and 'local-dir:PATH' / 'hf-hub:REPO' are accepted too."
        )
    weights = weights_table().get(arch_name, ())
    if tag is None:
        return Resolved(name, ARCHITECTURES[arch_name], weights[0] if weights else None)
    for w in weights:
        if w.tag == tag:
            return Resolved(name, ARCHITECTURES[arch_name], w)
    known = ", ".join(f"{arch_name}.{w.tag}" for w in weights) or "none yet"
    raise UnknownModelError(f"Unknown tag '{tag}' for {arch_name}. Pretrained tags of this architecture: {known}.")


def list_models(
    pattern: Union[str, Sequence[str]] = "*",
    pretrained: bool = False,
    *,
    include_aliases: bool = False,
) -> list[str]:
    """Registry names matching a wildcard pattern (or several), sorted.

    Args:
        pattern: ``fnmatch`` pattern(s), e.g. ``"aps_*"`` or ``"*_patch2_32"``.
        pretrained: list only names with pretrained weights, one entry per tag (``name.tag``).
        include_aliases: also list the short aliases (``aps_vit_t``).
    """
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    if pretrained:
        names: Iterable[str] = (f"{arch}.{w.tag}" for arch, ws in weights_table().items() for w in ws)
    else:
        names = list(ARCHITECTURES) + (list(ALIASES) if include_aliases else [])
    return sorted(n for n in set(names) if any(fnmatch.fnmatchcase(n, p) for p in patterns))


def model_info(name: str) -> dict[str, Any]:
    """Everything the registry knows about a name, as a JSON-serialisable dict."""
    r = resolve(name)
    arch = r.architecture
    aliases = sorted(a for a, target in ALIASES.items() if target == arch.name)
    return {
        "name": r.full_name,
        "architecture": arch.name,
        "aliases": aliases,
        "method": asdict(arch.method),
        "size": arch.size.name,
        "model_args": arch.model_args,
        "norm_eps": arch.method.norm_eps,
        "pos_embed": arch.method.pos_embed,
        "tags": [w.tag for w in weights_table().get(arch.name, ())],
        "weights": asdict(r.weights) if r.weights else None,
    }
