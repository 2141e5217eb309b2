"""Messages, help and documents name the commands a wheel install has: ``sslzoo pretrain`` / ``sslzoo publish``.

A wheel installs ``training/`` as ``sslzoo.training``, so ``python -m training.pretrain`` is a ModuleNotFoundError
there; only the documents that explicitly describe the in-repository form may show it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import sslzoo
from sslzoo import cli

REPO = Path(__file__).resolve().parents[1]
IN_REPOSITORY_ONLY = "python -m training."
# the two documents that explain the in-repository form, in the same paragraph that shows it
EXPLAINED = {"README.md", "training/README.md"}


def _texts():
    for pattern in ("src/**/*.py", "src/**/*.md", "training/**/*.py", "training/**/*.md", "training/**/*.yaml",
                    "MODEL_CARDS/*.md", "docs/*.md", "scripts/*", "README.md", "hubconf.py"):
        for path in REPO.glob(pattern):
            if path.is_file() and ".egg-info" not in str(path):
                yield path.relative_to(REPO).as_posix(), path.read_text(encoding="utf-8", errors="replace")


def test_no_message_or_document_names_a_module_the_wheel_lacks() -> None:
    offenders = []
    for name, text in _texts():
        for paragraph in text.split("\n\n"):
            if IN_REPOSITORY_ONLY in paragraph and not (name in EXPLAINED and "in-repository form" in paragraph):
                offenders.append(f"{name}: {paragraph.strip().splitlines()[0][:100]}")
    assert not offenders, "say `sslzoo pretrain` / `sslzoo publish`:\n" + "\n".join(offenders)


def test_help_names_the_sslzoo_commands(capsys) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps the help lines
    assert "sslzoo pretrain --help" in out and "sslzoo publish --help" in out and IN_REPOSITORY_ONLY not in out
    from training.config import parser
    from training.publish import main as publish_main

    assert parser().format_usage().startswith("usage: sslzoo pretrain")
    with pytest.raises(SystemExit):
        publish_main(["--help"])
    assert capsys.readouterr().out.startswith("usage: sslzoo publish")


def test_the_hub_folder_error_names_sslzoo_publish(tmp_path: Path) -> None:
    with pytest.raises(sslzoo.SslzooError) as e:
        sslzoo.create_model(f"local-dir:{tmp_path}")
    assert "`sslzoo publish`" in str(e.value) and IN_REPOSITORY_ONLY not in str(e.value)
