"""The zoo's own checkpoints, listed in ``sslzoo/zoo/index.json`` (written by ``scripts/build_zoo.py``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .schema import Result, Weights

ZOO_INDEX = Path(__file__).resolve().parent.parent / "zoo" / "index.json"


def zoo_entries(index: Path = ZOO_INDEX) -> list[dict[str, Any]]:
    """The entries of the zoo index, in the order it lists them (none when the index is missing)."""
    if not index.is_file():
        return []
    return list(json.loads(index.read_text(encoding="utf-8"))["models"])


def zoo_weights(index: Path = ZOO_INDEX) -> dict[str, tuple[Weights, ...]]:
    """The zoo's own checkpoints, shipped in ``sslzoo/zoo/`` and listed in its ``index.json``.

    ``index.json`` is written by ``scripts/build_zoo.py`` from the training runs and their measurements; every entry
    names its architecture and holds the fields of :class:`Weights` (results as dicts of :class:`Result`), plus
    provenance (``run``) and the regression figures (``regression``) that the registry does not need.
    """
    out: dict[str, list[Weights]] = {}
    for entry in zoo_entries(index):
        fields = {k: v for k, v in entry["weights"].items() if k != "results"}
        for key in ("input_size", "mean", "std"):
            if fields.get(key) is not None:
                fields[key] = tuple(fields[key])
        results = tuple(Result(**r) for r in entry["weights"].get("results", ()))
        out.setdefault(entry["architecture"], []).append(Weights(**fields, results=results))
    return {arch: tuple(ws) for arch, ws in out.items()}
