"""The checkpoint layouts that ``sslzoo convert`` reads: one row per layout, without torch.

A row names the layout (``--from NAME``, a registry entry's ``convert_from``), its title in messages and cards, the
module of :mod:`sslzoo.weights.convert` that recognises and converts it, and its family: layouts whose files hold the same
containers (a two-encoder state dict; teacher/student dicts), so that an explicit ``--from`` of one converts the
other's files. Adding a layout is a converter module plus one row here. The order is the order of recognition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Layout:
    name: str
    title: str
    converter: str  # the module sslzoo.weights.convert.<converter>
    family: Optional[str] = None


LAYOUTS: tuple[Layout, ...] = (
    Layout("aps", "APS", "aps"),
    Layout("patchmix", "PatchMix", "patchmix", family="two encoders"),
    Layout("adclr", "ADCLR/PQCL", "dino", family="teacher and student"),
    Layout("dino", "DINO", "dino", family="teacher and student"),
    Layout("mocov3", "MoCo v3", "mocov3", family="two encoders"),
)
LAYOUT_NAMES: tuple[str, ...] = tuple(row.name for row in LAYOUTS)
TITLES: dict[str, str] = {row.name: row.title for row in LAYOUTS}


def same_family(a: str, b: str) -> bool:
    """Whether files of layout ``a`` hold the containers of layout ``b`` (and the other way round)."""
    fa, fb = (next(row.family for row in LAYOUTS if row.name == n) for n in (a, b))
    return fa is not None and fa == fb
