"""Cost of a linear-probe sweep of 8 learning rates (parallel heads) against one learning rate, same run.

    python benchmarks/linear_probe.py          # 50,000 x 384 features, 10 classes
    python benchmarks/linear_probe.py --quick

Prints a table and writes benchmarks/results/linear_probe.json. Target: 8 learning rates cost at most 2x one.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from sslzoo.eval.linear import DEFAULT_LRS, linear_probe

RESULTS = Path(__file__).with_name("results") / "linear_probe.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.n, args.epochs = 5000, 2
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(args.classes, args.dim, generator=g)
    y = torch.randint(0, args.classes, (args.n,), generator=g)
    x = centers[y] + 2 * torch.randn(args.n, args.dim, generator=g)
    xt, yt = x[: args.n // 5], y[: args.n // 5]
    rows = []
    for lrs in (DEFAULT_LRS[4:5], DEFAULT_LRS):
        start = time.perf_counter()
        r = linear_probe(x, y, xt, yt, lrs=lrs, epochs=args.epochs, seed=0)
        rows.append({"learning_rates": len(lrs), "seconds": time.perf_counter() - start,
                     "best_test_acc": r["best"]["test_acc"]})
    for r in rows:
        r["ratio"] = r["seconds"] / rows[0]["seconds"]
    print(f"linear probe: {args.n} x {args.dim} features, {args.classes} classes, {args.epochs} epochs, batch 1024")
    print("| learning rates | seconds | x one lr |\n|---:|---:|---:|")
    for r in rows:
        print(f"| {r['learning_rates']} | {r['seconds']:.2f} | {r['ratio']:.2f} |")
    if not args.quick:
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps({"benchmark": "linear_probe", **vars(args), "rows": rows, "target_ratio": 2.0,
                                       "threads": torch.get_num_threads()}, indent=2) + "\n")
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
