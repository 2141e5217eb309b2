"""scripts/gpu_check.py, the prepared one-GPU check: its dry run on the CPU (tiny ViT, one step, the pretraining
program in this process) writes the report it promises, and its summaries read what the training log holds."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _log(run: Path, rows: list[dict]) -> Path:
    run.mkdir(parents=True)
    with (run / "log.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return run


def test_summaries_read_the_training_log(gpu_check, tmp_path: Path) -> None:
    rates = [10.0, 50.0, 90.0, 100.0, 104.0, 96.0]  # the first WARMUP_ROWS are left out of the median
    rows = [{"iteration": i + 1, "loss": 5.0 - i, "images_per_s": r, "gpu_mem_gib": 1.0 + i % 2}
            for i, r in enumerate(rates)]
    moco = gpu_check.run_summary(_log(tmp_path / "mocov3", rows))
    assert moco == {"iterations": 6, "images_per_s": 100.0, "peak_gpu_mem_gib": 2.0, "final_loss": 0.0}
    runs = {"mocov3": moco, "aps": dict(moco, images_per_s=25.0, peak_gpu_mem_gib=1.0)}
    gpu_check.relative_to_mocov3(runs)
    assert runs["aps"]["images_per_s_vs_mocov3"] == 0.25 and runs["aps"]["peak_gpu_mem_gib_vs_mocov3"] == 0.5
    resumed = _log(tmp_path / "resumed", [{"iteration": i} for i in (1, 2, 3, 4)])
    assert gpu_check.resumed_from(resumed, 2) and not gpu_check.resumed_from(resumed, 4)
    repeated = _log(tmp_path / "repeated", [{"iteration": i} for i in (1, 2, 2, 3)])
    assert not gpu_check.resumed_from(repeated, 2)


def test_dry_run_trains_resumes_and_writes_the_report(gpu_check, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("OUT", str(tmp_path / "out"))
    report = gpu_check.main(["--device", "cpu", "--steps", "1", "--tiny", "--no-tests", "--launcher", "inline",
                             "--batch-size", "8", "--methods", "mocov3", "adclr", "--work", str(tmp_path / "work")])
    written = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert written == json.loads(json.dumps(report))
    assert {k: v["status"] for k, v in written["stages"].items()} == {"mocov3": "ok", "adclr": "ok", "resume": "ok"}
    assert written["runs"]["adclr"]["iterations"] == 1 and written["runs"]["adclr"]["images_per_s_vs_mocov3"] > 0
    assert written["runs"]["mocov3"]["peak_gpu_mem_gib"] is None  # no GPU, no memory column
