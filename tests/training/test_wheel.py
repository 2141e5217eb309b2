"""The wheel, installed into a fresh virtual environment outside the repository, trains, publishes and loads.

Built with pip from this checkout, installed with the pinned constraints (``requirements/ci.txt``), and run from
another working directory, so nothing of the repository is importable: ``sslzoo pretrain`` and ``sslzoo publish``
are the wheel's, the recipes its package data. Minutes, not seconds (the environment install dominates).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _run(cmd: list[str], *, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def test_the_wheel_trains_publishes_and_loads_outside_the_repository(small_cifar, tmp_path: Path) -> None:
    data, _ = small_cifar
    timings = {}
    start = time.perf_counter()
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(REPO)],
         cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("sslzoo-*.whl")
    timings["build"] = time.perf_counter() - start
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    bin_dir = venv / "bin"
    start = time.perf_counter()
    _run([str(bin_dir / "python"), "-m", "pip", "install", "-q", "-c", str(REPO / "requirements" / "ci.txt"),
          f"{wheel}[train]"], cwd=tmp_path)
    timings["install"] = time.perf_counter() - start

    work = tmp_path / "elsewhere"
    work.mkdir()
    start = time.perf_counter()
    _run([str(bin_dir / "sslzoo"), "pretrain", "--method", "aps", "--profile", "quick", "--steps", "2",
          "--data", str(data), "--batch-size", "16", "--output", "run", "--device", "cpu", "--no-progress",
          "--set", "log.knn_bank=80", "--set", "log.knn_queries=40", "--set", f"cache_dir={tmp_path / 'cache'}"],
         cwd=work)
    timings["pretrain"] = time.perf_counter() - start
    assert (work / "run" / "checkpoint.pt").is_file() and (work / "run" / "tensorboard").is_dir()
    _run([str(bin_dir / "sslzoo"), "publish", "run", "--output", "hub"], cwd=work)
    probe = ("import sslzoo, torch, importlib.util\n"
             "assert importlib.util.find_spec('training') is None, 'the wheel must not install a top-level training'\n"
             "import sslzoo.training.views.aps as aps\n"
             "assert 'site-packages' in aps.__file__, aps.__file__\n"
             "m = sslzoo.create_model('local-dir:hub').eval()\n"
             "print(tuple(m(torch.zeros(1, 3, 32, 32)).shape))\n")
    out = _run([str(bin_dir / "python"), "-c", probe], cwd=work).stdout
    assert out.strip().splitlines()[-1] == "(1, 128)"
    # the same programs answer with the same exit codes: a user error is one line and status 2
    bad = subprocess.run([str(bin_dir / "sslzoo"), "pretrain", "--method", "aps", "--profile", "nope", "--data",
                          str(data)], cwd=work, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "has no profile 'nope'" in bad.stderr and "Traceback" not in bad.stderr
    print("wheel timings (s):", {k: round(v, 1) for k, v in timings.items()})
