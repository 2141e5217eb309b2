"""The prepared device check (issue 26), for whoever is first lent a GPU: ``scripts/gpu_check.sh`` runs it.

    python scripts/gpu_check.py                                   # one GPU, ViT-S/16 at 224 px, bf16, under 8 min
    python scripts/gpu_check.py --device cpu --steps 1 --tiny --no-tests --launcher inline   # the dry run tests use

Stages, each under its own time limit (a stage that fails or runs out of time is recorded, the next one runs):

1. the fast test subset (``tests/device``: fake CUDA and, with a GPU, real steps of every method; the bf16 and
   CUDA-branch tests), on the machine's device;
2. every method trains ``--steps`` iterations of its own recipe with bf16 autocast, one process under ``torchrun``
   (which joins NCCL on CUDA), on a generated ImageFolder of noise images (the GPU machine has no data set);
3. MoCo v3 is stopped half-way and resumed (``--resume auto``): the checkpoint, with its CUDA RNG states, is read
   onto the GPU;
4. ``gpu_check.json``: per method, the median images/s after the first iterations and the peak GPU memory from each
   run's ``log.csv``, each next to MoCo v3's (the same step of the same backbone), plus every stage's status.

The JSON goes to ``$OUT`` when set, else ``--results`` (``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

METHODS = ("mocov3", "aps", "patchmix", "ccrop", "dino", "adclr")
TEST_SUBSET = ("tests/device", "tests/training/test_mixed_precision.py", "tests/training/test_cuda_branches.py")
REPO = Path(__file__).resolve().parents[1]
# --tiny: the recipes' small CPU profile on the pico ViT (64 wide, 2 blocks, patch 8, 32 px); ADCLR's queries 2 patches
TINY_SETS = {"adclr": ["method_args.tokens=2"]}
WARMUP_ROWS = 3  # log rows left out of the images/s median (allocator warm-up, cuDNN/cuBLAS autotuning)


def make_image_folder(root: Path, *, size: int, per_class: int, classes: int = 2, seed: int = 0) -> Path:
    """``root/train/<class>/*.png``: seeded noise images of one size (the in-memory input path)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in range(classes):
        folder = root / "train" / f"class{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i:04d}.png")
    return root


def pretrain_argv(method: str, args: argparse.Namespace, data: Path, output: Path, steps: int) -> list[str]:
    """The ``sslzoo pretrain`` arguments of one method's run."""
    sets = ["log.every=1", "log.knn_every_steps=0", "log.knn_every_epochs=0", "optim.warmup_epochs=0",
            f"amp={args.amp}", f"cache_dir={output.parent / 'cache'}"] + (TINY_SETS.get(method, []) if args.tiny else [])
    argv = ["--method", method, "--arch", args.arch, "--data", str(data), "--steps", str(steps), "--batch-size",
            str(args.batch_size), "--output", str(output), "--device", args.device, "--no-progress",
            "--ckpt-every", str(max(1, steps))] + (["--profile", "quick"] if args.tiny else [])
    for item in sets:
        argv += ["--set", item]
    return argv


def launch(argv: list[str], launcher: str, timeout: float) -> dict:
    """Run one pretraining process; returns its status, seconds and output tail."""
    start = time.perf_counter()
    if launcher == "inline":  # the dry run: the same program, in this process
        from sslzoo.training import pretrain

        code = pretrain.main(argv)
        return {"status": "ok" if code == 0 else f"exit {code}", "seconds": round(time.perf_counter() - start, 1)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "-m",
           "sslzoo.training.pretrain", *argv]
    return run_stage(cmd, timeout, start)


def run_stage(cmd: list[str], timeout: float, start: float | None = None) -> dict:
    start = time.perf_counter() if start is None else start
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=max(1.0, timeout))
        status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
        tail = (proc.stdout + proc.stderr)[-3000:]
    except subprocess.TimeoutExpired as e:
        status, tail = "timeout", str(e.stdout or "")[-3000:]
    return {"status": status, "seconds": round(time.perf_counter() - start, 1), "tail": tail}


def run_summary(run_dir: Path) -> dict:
    """Median images/s after the first rows and the peak GPU memory (GiB) of a run's ``log.csv``."""
    path = run_dir / "log.csv"
    if not path.is_file():
        return {}
    with path.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    rates = [float(r["images_per_s"]) for r in rows if r.get("images_per_s")]
    timed = rates[WARMUP_ROWS:] or rates
    memory = [float(r["gpu_mem_gib"]) for r in rows if r.get("gpu_mem_gib")]
    return {"iterations": int(rows[-1]["iteration"]) if rows else 0, "images_per_s": statistics.median(timed)
            if timed else None, "peak_gpu_mem_gib": max(memory) if memory else None,
            "final_loss": float(rows[-1]["loss"]) if rows else None}


def relative_to_mocov3(runs: dict[str, dict]) -> None:
    """Add each method's images/s and memory as a fraction of MoCo v3's (same backbone, batch and precision)."""
    base = runs.get("mocov3", {})
    for row in runs.values():
        for key in ("images_per_s", "peak_gpu_mem_gib"):
            if row.get(key) and base.get(key):
                row[f"{key}_vs_mocov3"] = round(row[key] / base[key], 3)


def resumed_from(run_dir: Path, stopped_at: int) -> bool:
    """Whether the run's log continues after ``stopped_at`` without repeating an iteration."""
    with (run_dir / "log.csv").open(encoding="utf-8") as f:
        its = [int(r["iteration"]) for r in csv.DictReader(f)]
    return stopped_at in its and its == sorted(set(its)) and its[-1] > stopped_at


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--arch", default="vit_small_patch16_224")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=12, help="iterations per method (the resume run: twice half)")
    p.add_argument("--amp", default="bf16", choices=["bf16", "fp16", "none"])
    p.add_argument("--tiny", action="store_true", help="pico ViT at 32 px with tiny heads (the dry run)")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--no-tests", action="store_true", help="skip the test subset")
    p.add_argument("--launcher", default="torchrun", choices=["torchrun", "inline"])
    p.add_argument("--budget-s", type=float, default=450.0, help="the whole check's time limit, in seconds")
    p.add_argument("--work", help="scratch folder (default: a temporary one)")
    p.add_argument("--results", default=str(REPO / "benchmarks" / "results"))
    args = p.parse_args(argv)
    if args.tiny:
        args.arch = "vit_pico_patch8_32"
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    deadline = time.perf_counter() + args.budget_s
    work = Path(args.work or tempfile.mkdtemp(prefix="gpu_check-"))
    report: dict = {"device": args.device, "arch": args.arch, "batch_size": args.batch_size, "steps": args.steps,
                    "amp": args.amp, "stages": {}, "runs": {}}
    if args.device == "cuda":
        import torch

        report["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    size = 32 if args.tiny else int(args.arch.rsplit("_", 1)[-1])
    data = make_image_folder(work / "data", size=size, per_class=max(args.batch_size, 8))
    if not args.no_tests:
        cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *TEST_SUBSET]
        report["stages"]["tests"] = run_stage(cmd, min(150.0, deadline - time.perf_counter()))
    # each method's share of what is left, keeping a quarter for the resume
    share = lambda n: max(5.0, 0.75 * (deadline - time.perf_counter()) / max(n, 1))  # noqa: E731
    for i, method in enumerate(args.methods):
        out = work / "runs" / method
        report["stages"][method] = launch(pretrain_argv(method, args, data, out, args.steps), args.launcher,
                                          share(len(args.methods) - i))
        report["runs"][method] = run_summary(out)
    relative_to_mocov3(report["runs"])
    half = max(1, args.steps // 2)
    resume_dir = work / "runs" / "resume-mocov3"
    first = launch(pretrain_argv("mocov3", args, data, resume_dir, half), args.launcher,
                   (deadline - time.perf_counter()) / 2)
    second = launch(pretrain_argv("mocov3", args, data, resume_dir, 2 * half) + ["--resume", "auto"],
                    args.launcher, deadline - time.perf_counter())
    resumed = first["status"] == second["status"] == "ok" and resumed_from(resume_dir, half)
    report["stages"]["resume"] = {"status": "ok" if resumed else "failed", "first": first, "second": second}
    target = Path(os.environ.get("OUT") or args.results) / "gpu_check.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v.get("status") for k, v in report["stages"].items()}, indent=1))
    print(f"written: {target}")
    return report


if __name__ == "__main__":
    stages = main()["stages"].values()
    sys.exit(0 if all(s.get("status") == "ok" for s in stages) else 1)
