"""The wheel's package list (pyproject.toml) holds every package of the repository: the library, and training/
installed as sslzoo.training; the sub-commands the wheel adds to ``sslzoo`` point at real functions."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

REPO = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def test_every_package_folder_is_in_the_wheel() -> None:
    setuptools = _pyproject()["tool"]["setuptools"]
    assert setuptools["package-dir"] == {"": "src", "sslzoo.training": "training"}
    found = {".".join(p.parent.relative_to(REPO / "src").parts) for p in (REPO / "src").rglob("__init__.py")}
    found |= {".".join(("sslzoo", *p.parent.relative_to(REPO).parts)) for p in (REPO / "training").rglob("__init__.py")}
    assert set(setuptools["packages"]) == found
    data = setuptools["package-data"]["sslzoo.training"]
    assert "recipes/*.yaml" in data and any((REPO / "training" / "recipes").glob("*.yaml"))


def test_the_sub_commands_point_at_the_training_programs() -> None:
    commands = _pyproject()["project"]["entry-points"]["sslzoo.commands"]
    assert set(commands) == {"pretrain", "publish"}
    for target in commands.values():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func))
