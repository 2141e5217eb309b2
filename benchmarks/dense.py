"""Dense evaluation: speed and memory against references measured in the same run.

    nice -n 10 python benchmarks/dense.py            # about 2 CPU-minutes
    nice -n 10 python benchmarks/dense.py --quick    # a smoke run

1. Patch-feature extraction vs CLS extraction, images/s, same model and input size (target: patch >= 0.9x CLS).
2. dense:nn search (chunked bank, re-ranking, the softmax vote) vs one bare faiss ``IndexFlatIP`` add + search of the
   same bank and queries (target: <= 1.3x).
3. dense:linear, one epoch on cached features vs one epoch that recomputes the features first (target: >= 5x).
4. Peak RSS of dense:nn with a bank of 1,000,000 patches of width 384, written to disk in chunks and searched from
   the memory-mapped file, in a fresh process (target: < 3 GiB).

Times are CPU seconds of the process (see ``timed``). Models are at random init (speed does not depend on the weights): the zoo's micro ViT/8 (width 128, depth 4) at
96 px, the mosaic benchmark's size, and a ViT-S/16 at 224 px. Prints a table and writes benchmarks/results/dense.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).with_name("results") / "dense.json"
GiB = 2**30


def timed(fn, repeats: int, warmup: bool = True) -> float:
    """Median CPU seconds of the process (all its threads) per call, after one untimed warm-up call.

    CPU time, not wall time: the machine these numbers come from is shared with a training run that takes most of
    its two cores, and the wall time of a niced process there measured the neighbours more than the code (a linear
    epoch of 2.2 CPU seconds took 15 to 43 s of wall time in one minute). Every ratio compares two measurements of
    the same process, alternated.
    """
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def vit(kind: str) -> torch.nn.Module:
    import timm

    torch.manual_seed(0)
    if kind == "micro":
        model = timm.create_model("vit_tiny_patch16_224", img_size=96, patch_size=8, embed_dim=128, depth=4,
                                  num_heads=4, num_classes=0)
        size = 96
    else:
        model = timm.create_model("vit_small_patch16_224", num_classes=0)
        size = 224
    model.pretrained_cfg = dict(model.pretrained_cfg, input_size=(3, size, size), crop_pct=1.0)
    return model.eval()


def extraction(kind: str, n: int, repeats: int) -> dict:
    from sslzoo.data import DecodedSplit
    from sslzoo.eval.features import extract_features

    model = vit(kind)
    size = model.patch_embed.img_size[0]
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    split = DecodedSplit(images, torch.zeros(n, dtype=torch.int64), ["x"], f"bench-{kind}")
    times = {"cls": [], "patch": []}
    for pool in times:  # warm-up
        extract_features(model, split, pool=pool, progress=False)
    for _ in range(repeats):  # alternated, so that a change on the machine hits both
        for pool in times:
            times[pool].append(timed(lambda: extract_features(model, split, pool=pool, progress=False), 1, False))
    ips = {pool: n / statistics.median(t) for pool, t in times.items()}
    return {"model": f"{kind} ViT at {size} px", "images": n, "cls_images_per_cpu_s": ips["cls"],
            "patch_images_per_cpu_s": ips["patch"], "ratio": ips["patch"] / ips["cls"], "target": ">= 0.9"}


def nn_search(bank_size: int, queries: int, dim: int, k: int, repeats: int) -> dict:
    import faiss
    import torch.nn.functional as F

    from sslzoo.eval.dense_nn import nn_class_scores

    g = torch.Generator().manual_seed(0)
    bank = torch.randn(bank_size, dim, generator=g)
    q = torch.randn(queries, dim, generator=g)
    labels = torch.nn.functional.one_hot(torch.randint(0, 10, (bank_size,), generator=g), 10).half()
    rows = torch.arange(bank_size)

    def bare() -> None:
        index = faiss.IndexFlatIP(dim)
        index.add(F.normalize(bank, dim=1).numpy())
        index.search(F.normalize(q, dim=1).numpy(), k)

    def dense() -> None:
        nn_class_scores(bank, rows, labels, q, k=k, backend="faiss")

    t_bare, t_dense = [], []
    bare()
    dense()
    for _ in range(repeats):
        t_bare.append(timed(bare, 1, False))
        t_dense.append(timed(dense, 1, False))
    b, d = statistics.median(t_bare), statistics.median(t_dense)
    return {"bank": bank_size, "queries": queries, "dim": dim, "k": k, "bare_faiss_cpu_s": b, "dense_nn_cpu_s": d,
            "ratio": d / b, "target": "<= 1.3"}


def linear_epoch(kind: str, n: int, repeats: int) -> dict:
    from sslzoo.data.segmentation import InMemorySegmentation
    from sslzoo.eval.dense_linear import train_linear_heads
    from sslzoo.eval.patch_features import extract_patch_features

    model = vit(kind)
    size = model.patch_embed.img_size[0]
    g = torch.Generator().manual_seed(0)
    data = InMemorySegmentation(torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g),
                                torch.randint(0, 10, (n, size, size), dtype=torch.uint8, generator=g),
                                [str(c) for c in range(10)], f"bench-linear-{kind}")
    feats, masks = extract_patch_features(model, data, progress=False)
    fit = torch.arange(n)

    def cached() -> None:
        train_linear_heads(feats, masks, fit, 10, epochs=1, progress=False)

    def recomputed() -> None:
        f, m = extract_patch_features(model, data, progress=False)
        train_linear_heads(f, m, fit, 10, epochs=1, progress=False)

    c, r = [], []
    cached()
    for _ in range(repeats):
        c.append(timed(cached, 1, False))
        r.append(timed(recomputed, 1, False))
    tc, tr = statistics.median(c), statistics.median(r)
    return {"model": f"{kind} ViT at {size} px", "images": n, "cached_epoch_cpu_s": tc, "recomputed_epoch_cpu_s": tr,
            "speedup": tr / tc, "target": ">= 5"}


def _peak_rss() -> int:
    """Bytes: the process's high-water resident set (``VmHWM``, which starts afresh at exec; ``ru_maxrss`` keeps the
    parent's peak across fork and exec on Linux, so it would report the benchmark's own peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _peak_rss_child(patches: int, dim: int, queries: int) -> None:
    """Runs in a fresh process: write the bank to disk in chunks, search it memory-mapped, print the peak RSS."""
    from sslzoo.eval.dense_nn import build_bank, nn_class_scores
    from sslzoo.eval.feature_store import ChunkedSafetensors, open_mapped

    grid, patch = 8, 8
    n = patches // (grid * grid)
    g = torch.Generator().manual_seed(0)
    start_rss = _peak_rss()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bank.safetensors"
        with ChunkedSafetensors(path, {"features": ((n, grid, grid, dim), torch.float32),
                                       "labels": ((n, grid * patch, grid * patch), torch.uint8)}) as writer:
            for s in range(0, n, 1024):
                rows = min(1024, n - s)
                writer.write("features", s, torch.randn(rows, grid, grid, dim, generator=g))
                writer.write("labels", s, torch.randint(0, 10, (rows, grid * patch, grid * patch), dtype=torch.uint8,
                                                         generator=g))
            writer.commit()
        features, masks = open_mapped(path, "features"), open_mapped(path, "labels")
        rows, labels = build_bank(masks, grid, 10, 1_000_000, 0)
        q = torch.randn(queries, dim, generator=g)
        t = time.process_time()
        nn_class_scores(features.reshape(-1, dim), rows, labels, q, k=30)
        seconds = time.process_time() - t
    peak = _peak_rss()
    print(json.dumps({"bank": len(rows), "dim": dim, "queries": queries, "bank_file_gib": n * grid * grid * dim * 4 / GiB,
                      "search_cpu_s": seconds, "peak_rss_gib": peak / GiB, "rss_after_imports_gib": start_rss / GiB,
                      "target": "< 3 GiB"}))


def peak_rss(patches: int, dim: int, queries: int) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--rss-child", str(patches), str(dim), str(queries)],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=["extraction", "nn_search", "linear_epoch", "nn_peak_rss"],
                        help="measure this part again and keep the others from the results file")
    parser.add_argument("--rss-child", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        _peak_rss_child(*args.rss_child)
        return
    q = args.quick
    parts = {
        "extraction": lambda: [extraction("micro", 128 if q else 256, 1 if q else 3),
                               extraction("small", 8 if q else 16, 1 if q else 2)],
        "nn_search": lambda: nn_search(10_000 if q else 50_000, 512 if q else 2048, 384, 30, 1 if q else 3),
        "linear_epoch": lambda: [linear_epoch("micro", 64 if q else 256, 1 if q else 2),
                                 linear_epoch("small", 8 if q else 16, 1 if q else 2)],
        "nn_peak_rss": lambda: peak_rss(100_000 if q else 1_000_000, 384, 256),
    }
    measured = {"machine": {"python": platform.python_version(), "torch": torch.__version__,
                            "threads": torch.get_num_threads(), "processor": platform.processor() or platform.machine()}}
    for name, measure in parts.items():
        if args.only in (None, name):
            measured[name] = measure()
    # with --only, the other parts come from the results file, read again before writing so that another --only run
    # that ended meanwhile is kept
    earlier = lambda: json.loads(RESULTS.read_text()) if args.only and RESULTS.is_file() else {}  # noqa: E731
    result = {**earlier(), **measured}
    print("| measure | value | target |\n|---|---:|---|")
    for e in result["extraction"]:
        print(f"| patch / CLS extraction, {e['model']} ({e['patch_images_per_cpu_s']:.0f} vs {e['cls_images_per_cpu_s']:.0f}"
              f" img/CPU-s) | {e['ratio']:.2f}x | {e['target']} |")
    s = result["nn_search"]
    print(f"| dense:nn / bare faiss, {s['bank']:,} x {s['dim']} bank, {s['queries']} queries"
          f" ({s['dense_nn_cpu_s']:.2f} vs {s['bare_faiss_cpu_s']:.2f} CPU-s) | {s['ratio']:.2f}x | {s['target']} |")
    for e in result["linear_epoch"]:
        print(f"| dense:linear epoch, recomputed / cached, {e['model']} ({e['recomputed_epoch_cpu_s']:.2f} vs"
              f" {e['cached_epoch_cpu_s']:.2f} CPU-s) | {e['speedup']:.1f}x | {e['target']} |")
    r = result["nn_peak_rss"]
    print(f"| dense:nn peak RSS, {r['bank']:,} x {r['dim']} bank on disk ({r['bank_file_gib']:.2f} GiB),"
          f" {r['queries']} queries | {r['peak_rss_gib']:.2f} GiB | {r['target']} |")
    if not q:
        RESULTS.write_text(json.dumps({**earlier(), **measured}, indent=2) + "\n")
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
