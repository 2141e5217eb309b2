"""sslzoo's names in timm's own registry: after ``import sslzoo``, ``timm.create_model("aps_vit_micro_patch8_32.cifar10",
pretrained=True)``, ``timm.list_models("aps_*", pretrained=True)`` and ``timm.data.resolve_model_data_config`` work on
every registry architecture and tag, and so does every tool that takes a timm name.

Each architecture becomes a timm entrypoint that calls :func:`sslzoo.create_model` (one construction and loading
path: pins, conversion and checks stay sslzoo's), with its tags as timm ``PretrainedCfg`` s carrying the entry's
preprocessing and sources. A name timm already has is left to timm.

``import sslzoo`` must not load torch, so the registration waits for timm: :func:`install` registers at once when
timm is already imported, else adds a meta-path hook that registers right after timm's own import finishes.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from typing import Any, Callable

default_cfgs: dict[str, Any] = {}  # read by timm's register_model: this module's architectures and their tags
_registered = False


def _pretrained_cfg(arch: Any, weights: Any) -> Any:
    from dataclasses import replace

    from .pretrained_cfg import pretrained_cfg_for

    # the architecture and tag fields are timm's register_model's to fill in
    cfg = pretrained_cfg_for(timm_arch=arch.name, img_size=arch.resolution.img_size,
                             num_classes=0, weights=weights, resolution=arch.resolution, method=arch.method)
    if weights is not None and not (weights.hf_hub_id or weights.url):
        # timm lists a tag as pretrained when it has a source; sslzoo resolves the files itself (shipped, hub dirs)
        cfg = replace(cfg, file=f"sslzoo:{arch.name}.{weights.tag}")
    return cfg


def _entrypoint(arch_name: str) -> Callable[..., Any]:
    def create(pretrained: bool = False, pretrained_cfg: Any = None, pretrained_cfg_overlay: Any = None,
               **kwargs: Any) -> Any:
        from .models import create_model

        tag = pretrained_cfg if isinstance(pretrained_cfg, str) else getattr(pretrained_cfg, "tag", None)
        if isinstance(pretrained_cfg, dict):
            tag = pretrained_cfg.get("tag")
        name = f"{arch_name}.{tag}" if tag else arch_name
        overlay = dict(pretrained_cfg_overlay or {})
        file = overlay.pop("file", None)  # timm's way to name a weight file: checked as pretrained_file= is
        return create_model(name, pretrained=pretrained, pretrained_file=file if pretrained else None,
                            pretrained_cfg_overlay=overlay or None, **kwargs)

    create.__name__ = create.__qualname__ = arch_name
    create.__module__ = __name__
    create.__doc__ = f"sslzoo's {arch_name} (sslzoo.create_model)."
    return create


def register_in_timm() -> None:
    """Register every sslzoo architecture and tag in timm (once)."""
    global _registered
    if _registered:
        return
    _registered = True
    from collections import deque

    import timm
    from timm.models import register_model
    from timm.models._pretrained import DefaultCfg

    from . import registry

    table = registry.weights_table()
    for arch_name, arch in registry.ARCHITECTURES.items():
        if timm.is_model(arch_name):
            continue
        weights = table.get(arch_name, ())
        cfgs = {w.tag: _pretrained_cfg(arch, w) for w in weights} or {"": _pretrained_cfg(arch, None)}
        default_cfgs[arch_name] = DefaultCfg(tags=deque(cfgs), cfgs=cfgs)
        register_model(_entrypoint(arch_name))


class _AfterTimm(importlib.abc.MetaPathFinder):
    """Finds timm as the other finders do, and registers sslzoo's names once timm's module has executed."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "timm":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("timm")
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            run(module)
            register_in_timm()

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def install() -> None:
    """Register now if timm is loaded, else as soon as it is."""
    if "timm" in sys.modules:
        register_in_timm()
    elif not any(isinstance(f, _AfterTimm) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterTimm())
