"""The README's main job, read from between its markers and run verbatim, as a new user would on a fresh clone."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def readme_block(marker: str) -> list[str]:
    """The commands of a fenced block between ``<!-- marker:start -->`` and ``<!-- marker:end -->`` in README.md."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(rf"<!-- {marker}:start -->\n(.*?)<!-- {marker}:end -->", text, re.S)
    assert found, f"README.md has no {marker} markers"
    return [line for line in found.group(1).splitlines() if line.strip() and not line.startswith("```")]


def test_the_main_job_runs_verbatim_offline_with_published_weights(tmp_path):
    [command] = readme_block("mainjob")
    env = dict(os.environ, SSLZOO_CACHE=str(tmp_path / "cache"), HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    env.pop("SSLZOO_HUB", None)
    # the console script installed beside this interpreter, as the README's install command puts it on PATH
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    start = time.perf_counter()
    proc = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "random init" not in proc.stdout
    assert "[pretrained (sha256" in proc.stdout  # the published checkpoint, verified against its pin
    rows = dict(re.findall(r"^\| (\d+) \| ([\d.]+) \|$", proc.stdout, re.M))
    assert sorted(map(int, rows)) == [10, 20, 100, 200]
    assert float(rows["20"]) > 30.0  # a zoo checkpoint; the micro ViT/8 at random init scores 20 on the sample
    assert seconds < 60, f"the main job took {seconds:.0f} s"
