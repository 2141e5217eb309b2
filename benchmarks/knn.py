"""kNN search speed against its floor: one bare fp32 similarity matmul of the same shapes, timed in the same run.

    python benchmarks/knn.py            # 50,000 x 384 bank, 10,000 queries, k = 20
    python benchmarks/knn.py --quick    # a small smoke run

Prints a table and writes benchmarks/results/knn.json. Target: each path at most 1.3x the floor.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from sslzoo.eval.knn import knn_classify

RESULTS = Path(__file__).with_name("results") / "knn.json"


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bank", type=int, default=50_000)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.bank, args.queries, args.repeats = 5000, 1000, 1
    g = torch.Generator().manual_seed(0)
    bank = torch.randn(args.bank, args.dim, generator=g)
    queries = torch.randn(args.queries, args.dim, generator=g)
    labels = torch.randint(0, 10, (args.bank,), generator=g)
    nb, nq = F.normalize(bank, dim=1), F.normalize(queries, dim=1)

    floor = timed(lambda: nq @ nb.T, args.repeats)
    rows = [{"path": "floor: one fp32 matmul (Q x D) @ (D x N)", "seconds": floor, "ratio": 1.0}]
    preds = {}
    for backend in ("faiss", "torch"):
        seconds = timed(lambda: preds.__setitem__(backend, knn_classify(bank, labels, queries, k=args.k,
                                                                         backend=backend)), args.repeats)
        rows.append({"path": f"knn_classify backend={backend}", "seconds": seconds, "ratio": seconds / floor})
    same = bool(torch.equal(preds["faiss"], preds["torch"]))

    print(f"kNN: bank {args.bank} x {args.dim}, {args.queries} queries, k={args.k}, "
          f"{torch.get_num_threads()} threads; median of {args.repeats}")
    print("| path | seconds | x floor |\n|---|---:|---:|")
    for r in rows:
        print(f"| {r['path']} | {r['seconds']:.3f} | {r['ratio']:.2f} |")
    print(f"faiss and torch predictions identical: {same}")
    if not args.quick:
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps({
            "benchmark": "knn", "bank": args.bank, "queries": args.queries, "dim": args.dim, "k": args.k,
            "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
            "torch": torch.__version__, "rows": rows, "identical_predictions": same, "target_ratio": 1.3,
        }, indent=2) + "\n")
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
