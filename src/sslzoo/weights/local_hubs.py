"""The local hub folders (``$SSLZOO_HUB``, then the one shipped in the package) and the files of a hub folder."""

from __future__ import annotations

import os
from pathlib import Path

from .. import registry

WEIGHTS_NAME = "model.safetensors"
FULL_WEIGHTS_NAME = "full.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
SHIPPED_HUB = registry.ZOO_INDEX.parent  # the hub folder shipped with the package (src/sslzoo/zoo)


def local_hub_dirs() -> list[Path]:
    """Local hub folders in resolution order: ``$SSLZOO_HUB`` entries (``os.pathsep``-separated), then the shipped
    one (:data:`SHIPPED_HUB`, read at call time)."""
    env = [Path(p).expanduser() for p in os.environ.get("SSLZOO_HUB", "").split(os.pathsep) if p]
    return env + [SHIPPED_HUB]


def entry_dir(resolved: registry.Resolved) -> str:
    """The folder of a registry entry inside a local hub: its ``hub_dir``, else its full name."""
    w = resolved.weights
    return (w.hub_dir if w is not None else None) or resolved.full_name
