"""The documentation site (mkdocs.yml, docs/): it builds with warnings as errors, a page that names a missing
function, cross-reference, command or flag fails the build, every error class has its advice, and the guides' examples
marked ``<!-- run -->`` run on a CPU, offline, as they stand."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
HAS_DOCS_EXTRA = all(importlib.util.find_spec(m) for m in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers"))
needs_docs_extra = pytest.mark.skipif(not HAS_DOCS_EXTRA,
                                      reason="the [docs] extra is not installed (pip install -e '.[docs]')")


def _hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", REPO / "scripts" / "docs_hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ, SSLZOO_CACHE=str(tmp_path / "cache"), HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"),
               NO_MKDOCS_2_WARNING="1", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    env.pop("SSLZOO_HUB", None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # the installed `sslzoo`
    return env


def _build(tmp_path: Path, config: Path) -> subprocess.CompletedProcess:
    # not -q: it silences the warnings that --strict counts (autorefs does not even log them then)
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config),
                           "-d", str(tmp_path / "site")], capture_output=True, text=True, env=_env(tmp_path),
                          cwd=REPO, timeout=600)


@needs_docs_extra
def test_the_site_builds_with_warnings_as_errors(tmp_path):
    proc = _build(tmp_path, REPO / "mkdocs.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    site = tmp_path / "site"
    cli = (site / "cli" / "index.html").read_text(encoding="utf-8")
    # generated from the parsers: a flag of each kind of sub-command, with its default and choices
    for text in ("sslzoo knn", "--temperature", "knn:instdisc", "sslzoo dense", "--bank-size", "sslzoo pretrain",
                 "--accum-steps", "--no-compile", "sslzoo publish", "--no-full", "sslzoo convert", "momentum_encoder"):
        assert text in cli, text
    api = (site / "api" / "sslzoo" / "index.html").read_text(encoding="utf-8")
    assert 'id="sslzoo.models.create_model"' in api and "pretrained_file" in api
    zoo = (site / "zoo" / "index.html").read_text(encoding="utf-8")
    assert "patchmix_vit_micro_patch8_32.cifar10" in zoo and "dino_vit_small_patch16_224.authors_in1k" in zoo
    assert (site / "zoo" / "cards" / "patchmix_vit_micro_patch8_32.cifar10" / "index.html").is_file()
    errors = (site / "troubleshooting" / "index.html").read_text(encoding="utf-8")
    assert "sslzoo.errors.ChecksumError" in errors and "sslzoo.training.loop.NonFiniteLossError" in errors


def _one_page_site(tmp_path: Path, page: str) -> Path:
    """A config like mkdocs.yml (same hooks, plugins, theme) over one page."""
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text(page, encoding="utf-8")
    config.update(docs_dir=str(docs), nav=[{"Home": "index.md"}], hooks=[str(REPO / "scripts" / "docs_hooks.py")])
    python = next(p["mkdocstrings"] for p in config["plugins"] if isinstance(p, dict) and "mkdocstrings" in p)
    python["handlers"]["python"]["paths"] = [str(REPO / "src"), str(REPO)]
    path = tmp_path / "mkdocs.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@needs_docs_extra
def test_a_one_page_site_with_real_names_builds(tmp_path):
    page = ("# Guide\n\n::: sslzoo.models.create_model\n\nSee [create_model][sslzoo.models.create_model].\n\n"
            "```bash\nsslzoo knn --model NAME --k 5\n```\n")
    proc = _build(tmp_path, _one_page_site(tmp_path, page))
    assert proc.returncode == 0, proc.stdout + proc.stderr  # so the failures below come from the missing names


@needs_docs_extra
@pytest.mark.parametrize("page, says", [
    ("# API\n\n::: sslzoo.models.create_modle\n", ["create_modle"]),
    ("# Guide\n\nSee [create_model][sslzoo.models.create_modle].\n", ["create_modle"]),
    ("# Guide\n\n```bash\nsslzoo knn --model NAME --kk 5\n```\n\nThen `sslzoo evaluate --model NAME`.\n",
     ["`sslzoo knn` has no flag `--kk` (did you mean ['--k'])", "`sslzoo evaluate` is no command"]),
], ids=["missing function", "missing cross-reference", "missing flag and command"])
def test_a_page_naming_something_that_does_not_exist_fails_the_build(tmp_path, page, says):
    proc = _build(tmp_path, _one_page_site(tmp_path, page))
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and all(s in output for s in says), output


def test_every_error_class_has_advice_on_the_troubleshooting_page():
    hooks = _hooks()
    page = (DOCS / "troubleshooting.md").read_text(encoding="utf-8")
    names = {cls.__name__ for cls in hooks.error_classes()}
    assert {"SslzooError", "ChecksumError", "NonFiniteLossError", "ViewConfigError", "InvalidOptionError"} <= names
    text, problems = hooks.error_sections(page)
    assert problems == []
    assert "`sslzoo.errors.ChecksumError` (`SslzooError`): A weight file whose sha256" in text
    # a class without advice, and advice for a class that is gone, are both named
    _, problems = hooks.error_sections(page.replace("### `ChecksumError`", "### `ChecksumMismatch`"))
    assert any("`ChecksumError` has no" in p for p in problems) and any("`ChecksumMismatch`" in p for p in problems)


def test_the_readmes_name_only_commands_and_flags_that_exist():
    hooks = _hooks()
    parsers = hooks.cli_parsers()
    for name in ("README.md", "training/README.md", *(p.relative_to(REPO).as_posix() for p in DOCS.glob("*.md"))):
        assert hooks.flag_problems((REPO / name).read_text(encoding="utf-8"), parsers) == [], name
    assert hooks.flag_problems("```bash\nsslzoo pretrain --method aps --batchsize 8\n```", parsers) == [
        "`sslzoo pretrain` has no flag `--batchsize` (did you mean ['--batch-size'])"]


RUN_MARKER = re.compile(r"<!-- run -->\n```(\w+)\n(.*?)^```", re.S | re.M)
EXAMPLES = [(page.name, i, language, code) for page in sorted(DOCS.glob("*.md"))
            for i, (language, code) in enumerate(RUN_MARKER.findall(page.read_text(encoding="utf-8")))]


def test_the_guides_mark_examples_to_run():
    assert {page for page, *_ in EXAMPLES} >= {"quickstart.md", "zoo.md", "evaluation.md", "publishing.md"}
    assert all(language in ("python", "bash") for *_, language, _ in EXAMPLES)


@pytest.mark.parametrize("page, index, language, code", EXAMPLES, ids=[f"{p}#{i}" for p, i, *_ in EXAMPLES])
def test_a_marked_guide_example_runs_on_a_cpu_offline(tmp_path, page, index, language, code):
    command = [sys.executable, "-c", code] if language == "python" else ["bash", "-euo", "pipefail", "-c", code]
    proc = subprocess.run(command, capture_output=True, text=True, env=_env(tmp_path), cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, f"{page} example {index}:\n{code}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
