"""torch.hub entry points, one per registry architecture and per alias, generated from the registry.

``hubconf.py`` at the repository root re-exports these; nothing is defined there.
"""

from __future__ import annotations

from typing import Any, Callable

from . import registry
from .models import create_model


def _entrypoint(name: str) -> Callable[..., Any]:
    def entry(pretrained: bool = False, **kwargs: Any):
        return create_model(name, pretrained=pretrained, **kwargs)

    target = registry.ALIASES.get(name, name)
    tags = [w.tag for w in registry.weights_table().get(target, ())]
    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = (
        f"sslzoo {target}{' (alias ' + name + ')' if target != name else ''}: a timm VisionTransformer.\n\n"
        f"Pretrained tags: {', '.join(tags) or 'none yet'}. Arguments are those of sslzoo.create_model."
    )
    return entry


ENTRYPOINTS: dict[str, Callable[..., Any]] = {
    name: _entrypoint(name) for name in registry.all_names(with_tags=False, with_aliases=True)
}
globals().update(ENTRYPOINTS)
__all__ = sorted(ENTRYPOINTS)
