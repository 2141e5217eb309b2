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


def test_the_wheel_and_the_sdist_carry_the_licence(tmp_path: Path) -> None:
    """Built from a copy of the sources (no build/ or egg-info left in the checkout), in about two seconds."""
    import shutil
    import subprocess
    import sys
    import tarfile
    import zipfile

    build_meta = pytest.importorskip("setuptools.build_meta")
    licence = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    assert "Copyright 2026 The sslzoo authors" in licence
    project = _pyproject()["project"]
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    src = tmp_path / "src"
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE"):
        src.mkdir(exist_ok=True)
        shutil.copy(REPO / name, src / name)
    for name in ("src", "training"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    script = (f"from {build_meta.__name__} import build_sdist, build_wheel\n"
              "built = build_wheel('dist'), build_sdist('dist')\n"
              "print('BUILT', *built)\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=src, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    wheel_name, sdist_name = done.stdout.split("BUILT ")[-1].split()
    with zipfile.ZipFile(src / "dist" / wheel_name) as wheel:
        assert wheel.read("sslzoo-0.1.0.dist-info/licenses/LICENSE").decode() == licence
        metadata = wheel.read("sslzoo-0.1.0.dist-info/METADATA").decode().splitlines()
    assert "License-Expression: Apache-2.0" in metadata and "License-File: LICENSE" in metadata
    with tarfile.open(src / "dist" / sdist_name) as sdist:
        assert sdist.extractfile("sslzoo-0.1.0/LICENSE").read().decode() == licence


def test_a_folder_named_sslzoo_in_the_current_directory_does_not_shadow_the_install(tmp_path: Path) -> None:
    """From a clone's parent folder, the clone (``sslzoo/``, no ``__init__.py``) is not taken for the package."""
    import subprocess
    import sys

    (tmp_path / "sslzoo" / "src").mkdir(parents=True)  # the layout of a clone named sslzoo, seen from its parent
    script = ("import sslzoo, sslzoo.training, sslzoo.registry\n"
              "print(sslzoo.__file__, 'create_model' in dir(sslzoo),"
              " sslzoo.registry.resolve('aps_vit_t').full_name)")
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    file, has_create_model, resolved = proc.stdout.split()
    assert file != "None" and Path(file).name == "__init__.py" and not Path(file).is_relative_to(tmp_path)
    assert has_create_model == "True" and resolved.startswith("aps_vit_tiny_patch2_32.")
