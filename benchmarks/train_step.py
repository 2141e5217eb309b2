"""Training step cost of every method on the same ViT and batch, against MoCo v3 and the machine's matmul rate.

    PYTHONPATH=. python benchmarks/train_step.py --data PATH_TO/cifar10-jpg   # micro ViT/8, ViT-T/4, ViT-T/2 at 32 px
    PYTHONPATH=. python benchmarks/train_step.py --data PATH --archs vit_micro_patch8_32 --batch-size 64 --quick

Each method runs its own recipe (heads, views, losses, APS's 4 sub-steps) on the same backbone size. Reported per
method and architecture: ms per optimizer step of the model (forward, backward, optimizer, EMA; views excluded),
images/s of a whole iteration (views included; an APS iteration is 4 optimizer steps on the same images), the input
pipeline's images/s (uint8 cache -> float -> the method's batched views), and the achieved GFLOP/s of a whole
iteration as a fraction of the fp32 matmul rate (a 2048 x 2048 x 2048 matmul, the best of two) measured right after
each timed iteration: the fraction is the median over the timed iterations of (iteration GFLOP/s) / (the adjacent
matmul's GFLOP/s), so the machine's drift (it has measured 100-416 GFLOP/s across sessions) slows both sides of
each ratio alike. The fraction against the run's peak matmul rate is reported too (``matmul_fraction_of_peak``).

Before and after, in the same run: the MoCo v3 step of each architecture runs in four fresh processes, two with
glibc's default allocator (``--cpu-allocator system``, the step as it was) and two with the training default
(``--cpu-allocator retain``, sslzoo.cpu_allocator), in the order system, retain, retain, system; the allocator
setting is process-wide and cannot be undone, hence the processes. Minor page faults per iteration are recorded.
Every method's row comes from one more process with the training default.

FLOPs: counted by ``torch.utils.flop_counter.FlopCounterMode`` over one whole iteration (views, forwards, backward,
optimizer, EMA): 2 FLOPs per multiply-add of every matmul, convolution and attention product, forward and
backward; elementwise work (GELU, LayerNorm, softmax, AdamW) is not counted, so the fraction is the share of the
matmul rate the counted work reaches. ``--compile`` adds each method's step with ``torch.compile``d blocks (in the
retained-allocator process).

Targets: an APS step (65 of 257 tokens per view at patch 2) costs <= 0.35x a MoCo v3 step (the APS paper's claim);
the slowest pipeline delivers >= 5x the images/s of the fastest method; the MoCo v3 step reaches >= 50 % of the
matmul rate for the micro ViT/8 and >= 65 % for ViT-T/2 (issue 16). Prints a table and writes
benchmarks/results/train_step.json.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from training import distributed, loop, pretrain
from training.config import resolve
from training.views.sample_draws import PHOTOMETRIC, SampleDraws, sample_keys

RESULTS = Path(__file__).with_name("results") / "train_step.json"
METHODS = ("mocov3", "aps", "patchmix", "ccrop", "dino", "adclr")
# the zoo's micro ViT/8 at its zoo batch; the papers' CIFAR ViT-T at patch 4 and 2 at batches a CPU step can take
ARCHS = {"vit_micro_patch8_32": 256, "vit_tiny_patch4_32": 64, "vit_tiny_patch2_32": 32}


def matmul_rate(size: int = 2048, reps: int = 5, *, warm: int = 2) -> float:
    """fp32 FLOP/s of one square matmul, the best case of this machine's BLAS (the fastest of ``reps``)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(warm):
        a @ b
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size**3 / min(times)


def faults_and_kernel_time() -> tuple[int, float]:
    """Minor page faults and kernel CPU seconds of this process so far (what unmapped memory costs shows in both)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_minflt, usage.ru_stime


def measure(method: str, args: argparse.Namespace, extra: tuple[str, ...] = ()) -> dict:
    """One method's step and pipeline timings; ``extra`` flags are appended to its command line."""
    profile = ["--profile", args.profile] if getattr(args, "profile", None) else []
    argv = ["--method", method, *profile, "--arch", args.arch, "--data", args.data, "--batch-size", str(args.batch_size),
            "--steps", "1000", "--device", "cpu", "--output", "/nonexistent-benchmark-run", "--no-progress",
            "--cpu-allocator", args.cpu_allocator,
            "--set", "log.knn_every_epochs=0", "--set", "arch_kwargs.drop_path_rate=0.0"]
    if method == "ccrop":  # time the crops the method differs by, not its RandomResizedCrop warm-up
        argv += ["--set", "method_args.warmup_epochs=0"]
    patch = re.search(r"_patch(\d+)_", args.arch)
    if method == "adclr" and patch:  # the recipe's 12-px queries at patch 2; whole patches at any patch size
        argv += ["--set", f"method_args.size={int(patch[1]) * math.ceil(12 / int(patch[1]))}"]
    argv += list(extra)
    tr = pretrain.build(resolve(argv), distributed.init_distributed("cpu"))
    tr.method.train()
    substeps = tr.method.substeps

    batches = iter(tr.source.epoch_batches(0, 0))

    def views_only() -> float:
        start = time.perf_counter()
        batch = next(batches)
        with torch.no_grad():
            draws = SampleDraws(sample_keys(0, 0, batch.indices, PHOTOMETRIC))
            tr.method.finish_views(batch.crops, batch.geometry, draws, 0)
        return time.perf_counter() - start

    pipeline = [views_only() for _ in range(args.pipeline_reps + 1)][1:]
    loop.train_iteration(tr, next(batches))  # warm-up
    tr.iteration += 1
    with FlopCounterMode(display=False) as counter:  # one more iteration, counted and not timed
        loop.train_iteration(tr, next(batches))
    tr.iteration += 1
    flops = counter.get_total_flops()
    totals, rates, faults, kernel = [], [], [], []
    for _ in range(args.reps):
        faults_before, kernel_before = faults_and_kernel_time()
        start = time.perf_counter()
        loop.train_iteration(tr, next(batches))  # the input pipeline included, as in training
        totals.append(time.perf_counter() - start)
        faults_after, kernel_after = faults_and_kernel_time()
        faults.append(faults_after - faults_before)
        kernel.append(kernel_after - kernel_before)
        tr.iteration += 1
        rates.append(matmul_rate(reps=2, warm=0))  # the reference next to this iteration, best of two
    total, views = statistics.median(totals), statistics.median(pipeline)
    fractions = [flops / t / r for t, r in zip(totals, rates)]
    return {"method": method, "arch": args.arch, "cpu_allocator": args.cpu_allocator, "substeps": substeps,
            "ms_per_step": 1000 * (total - views) / substeps,
            "iteration_images_per_s": args.batch_size / total, "pipeline_images_per_s": args.batch_size / views,
            "gflop_per_iteration": flops / 1e9, "gflop_per_s": flops / total / 1e9,
            "matmul_fractions": fractions, "matmul_fraction": statistics.median(fractions),
            "minor_faults_per_iteration": statistics.median(faults),
            "kernel_cpu_s_per_iteration": statistics.median(kernel),
            "iteration_s": totals, "views_s": pipeline, "adjacent_matmul_gflop_per_s": [r / 1e9 for r in rates]}


def measure_arch(arch: str, args: argparse.Namespace) -> list[dict]:
    """Every method on ``arch`` in this process, with this process's ``args.cpu_allocator``."""
    ns = argparse.Namespace(**dict(vars(args), arch=arch, batch_size=args.batch_size or ARCHS.get(arch, 32)))
    # the first method measured at new shapes ran up to 3x slower than the same run repeated (allocator and thread
    # pool warm-up outlast one warm-up iteration): one run per architecture is discarded
    measure(args.methods[0], argparse.Namespace(**dict(vars(ns), reps=1, pipeline_reps=1)))
    rows = [measure(m, ns) for m in args.methods]
    if args.compile:
        rows += [dict(measure(m, ns, ("--compile",)), method=f"{m} --compile") for m in args.compile]
    base = next(r for r in rows if r["method"] == "mocov3")["ms_per_step"]
    for r in rows:
        r["step_ratio_to_mocov3"] = r["ms_per_step"] / base
    return rows


def in_fresh_process(arch: str, allocator: str, argv: list[str], *, only: str | None = None, reps: int = 0
                     ) -> list[dict]:
    """:func:`measure_arch` in a new Python process (the allocator setting cannot be undone in this one); ``only``:
    that one method, not compiled, ``reps`` timed iterations."""
    cmd = [sys.executable, __file__, *argv, "--worker", arch, "--cpu-allocator", allocator]
    if only:
        cmd += ["--methods", only, "--compile", "--reps", str(reps)]
    done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def before_after(arch: str, argv: list[str], reps: int) -> dict:
    """The MoCo v3 step with glibc's default allocator and with the retained one, in four processes run in the order
    system, retain, retain, system (drift that is linear in time cancels); per-iteration ratios pooled per side."""
    runs = {"system": [], "retain": []}
    for allocator in ("system", "retain", "retain", "system"):
        runs[allocator] += in_fresh_process(arch, allocator, argv, only="mocov3", reps=reps)
    out = {}
    for allocator, rows in runs.items():
        out[allocator] = {
            "matmul_fraction": statistics.median(f for r in rows for f in r["matmul_fractions"]),
            "ms_per_step": statistics.median(r["ms_per_step"] for r in rows),
            "minor_faults_per_iteration": statistics.median(r["minor_faults_per_iteration"] for r in rows),
            "kernel_cpu_s_per_iteration": statistics.median(r["kernel_cpu_s_per_iteration"] for r in rows),
            "processes": rows}
    return out


def checks_of(rows: list[dict], ab: dict[str, dict], archs: list[str]) -> dict:
    checks = {}
    for arch in archs:
        by = {r["method"]: r for r in rows if r["arch"] == arch}
        fastest = max(r["iteration_images_per_s"] for r in by.values())
        before, after = ab[arch]["system"], ab[arch]["retain"]
        check = {"pipeline_over_fastest_method": min(r["pipeline_images_per_s"] for r in by.values()) / fastest,
                 "mocov3_matmul_fraction_before": before["matmul_fraction"],
                 "mocov3_matmul_fraction_after": after["matmul_fraction"],
                 "mocov3_step_speedup_of_retained_allocator": before["ms_per_step"] / after["ms_per_step"],
                 "mocov3_kernel_cpu_s_per_iteration_before_after": [before["kernel_cpu_s_per_iteration"],
                                                                     after["kernel_cpu_s_per_iteration"]]}
        if "aps" in by:
            check["aps_step_ratio"] = by["aps"]["step_ratio_to_mocov3"]
        if "mocov3 --compile" in by:
            check["compile_speedup"] = by["mocov3"]["ms_per_step"] / by["mocov3 --compile"]["ms_per_step"]
        checks[arch] = check
    checks["targets"] = {"pipeline_over_fastest_method": 5.0, "aps_step_ratio": 0.35,
                         "mocov3_matmul_fraction": {"vit_micro_patch8_32": 0.5, "vit_tiny_patch2_32": 0.65},
                         "compile_speedup_to_make_default": 1.2}
    return checks


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="CIFAR-10 ImageFolder (extracted ../shared/data tarball)")
    p.add_argument("--archs", nargs="*", default=list(ARCHS))
    p.add_argument("--batch-size", type=int, help="default: 256 for the micro ViT/8, 64 at patch 4, 32 at patch 2")
    p.add_argument("--profile", default="zoo", help="each method's recipe profile (zoo: the published runs' heads)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--pipeline-reps", type=int, default=5)
    p.add_argument("--methods", nargs="*", default=list(METHODS))
    p.add_argument("--compile", nargs="*", default=["mocov3"], help="methods also measured with --compile")
    p.add_argument("--ab-reps", type=int, default=5, help="timed iterations per before/after process")
    p.add_argument("--quick", action="store_true", help="one timed iteration per method")
    p.add_argument("--worker", metavar="ARCH", help=argparse.SUPPRESS)  # one architecture, rows as JSON on stdout
    p.add_argument("--cpu-allocator", default="retain", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.quick:
        args.reps = 1
    if args.worker:
        print(json.dumps(measure_arch(args.worker, args)))
        return
    forwarded = sys.argv[1:]
    rates = [matmul_rate()]
    rows, ab = [], {}
    for arch in args.archs:
        rows += in_fresh_process(arch, "retain", forwarded)
        ab[arch] = before_after(arch, forwarded, args.ab_reps)
        rates.append(matmul_rate())
    # the run's peak, for comparison with results measured against it: the machine's rate drifts (100-416 GFLOP/s)
    every = rows + [r for a in ab.values() for side in a.values() for r in side["processes"]]
    peak = max(rates + [g * 1e9 for r in every for g in r["adjacent_matmul_gflop_per_s"]])
    for r in rows:
        r["matmul_fraction_of_peak"] = r["gflop_per_s"] * 1e9 / peak
    print(f"fp32 matmul rate: peak {peak / 1e9:.1f} GFLOP/s ({torch.get_num_threads()} threads); 'x matmul' is the "
          "median ratio to the matmul measured next to each iteration")
    print(f"{'arch':20s} {'method':17s} {'allocator':9s} {'ms/step':>9s} {'x MoCo v3':>9s} {'img/s':>8s} "
          f"{'GFLOP/s':>8s} {'x matmul':>8s} {'x peak':>7s} {'faults':>8s} {'pipeline img/s':>15s}")
    for r in rows:
        print(f"{r['arch']:20s} {r['method']:17s} {r['cpu_allocator']:9s} {r['ms_per_step']:9.1f} "
              f"{r['step_ratio_to_mocov3']:9.3f} {r['iteration_images_per_s']:8.1f} {r['gflop_per_s']:8.1f} "
              f"{r['matmul_fraction']:8.3f} {r['matmul_fraction_of_peak']:7.3f} "
              f"{r['minor_faults_per_iteration']:8.0f} {r['pipeline_images_per_s']:15.0f}")
    for arch in args.archs:
        for allocator, side in ab[arch].items():
            print(f"{arch:20s} MoCo v3 step, {allocator:6s} allocator (4 processes, ABBA): {side['ms_per_step']:8.1f} "
                  f"ms/step, x matmul {side['matmul_fraction']:.3f}, {side['minor_faults_per_iteration']:.0f} faults, "
                  f"{side['kernel_cpu_s_per_iteration']:.3f} s in the kernel per iteration")
    checks = checks_of(rows, ab, args.archs)
    print(json.dumps(checks, indent=2))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "archs": args.archs, "batch_sizes": {a: args.batch_size or ARCHS.get(a, 32) for a in args.archs},
        "profile": args.profile, "reps": args.reps, "device": "cpu",
        "torch_threads": torch.get_num_threads(), "matmul_gflop_per_s_peak": peak / 1e9,
        "matmul_gflop_per_s_between_archs": [r / 1e9 for r in rates], "machine": platform.platform(),
        "processor": platform.processor(), "torch": torch.__version__, "rows": rows, "before_after": ab,
        "checks": checks,
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
