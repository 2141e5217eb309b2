"""Feature-extraction throughput of ViT-T and ViT-S, as a fraction of this machine's fp32 matmul rate.

For each model, ``sslzoo.eval.features.extract_features`` runs over decoded CIFAR-10 (JPEG q75) images of the
embedded sample (uint8, transformed on the fly by the model's eval transform: identity size at 32 px, bicubic
32 -> 256 resize and 224 centre crop for the 224 px models), ``pool="cls"``, default batch size 256. "forward" is the
model alone on already transformed images, with the same chunking.

Model FLOPs are counted analytically (multiply-adds count 2; norms, softmax, GELU, biases left out)::

    N = (img / p)^2 patches, T = N + 1 tokens, d = width, h = MLP hidden width (4 d), L = depth
    FLOPs/image = 2 N (3 p^2) d                      patch embedding
                + L [ 2 T (3 d^2 + d^2 + 2 d h)      qkv, proj, fc1, fc2
                      + 4 T^2 d ]                    attention Q K^T and A V

The reference is the best of 5 timings of a 2048 x 2048 fp32 matmul (``2 n^3`` FLOPs), measured between the models
in the same run; each model is compared with the better of the two measured around it. Every timing is the best of
3. Usage: ``python benchmarks/features.py`` (about 3 minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from sslzoo import create_model
from sslzoo.data import DecodedSplit, embedded_sample, eval_transform
from sslzoo.eval.features import extract_features, images_per_pass, pool_features

MODELS = [
    "mocov3_vit_tiny_patch4_32",
    "mocov3_vit_tiny_patch2_32",
    "mocov3_vit_small_patch4_32",
    "mocov3_vit_small_patch2_32",
    "mocov3_vit_tiny_patch16_224",
    "mocov3_vit_small_patch16_224",
]
FLOPS_FORMULA = "2*N*(3*p^2)*d + L*(2*T*(4*d^2 + 2*d*h) + 4*T^2*d), N=(img/p)^2, T=N+1, h=4d"


def model_flops(model: torch.nn.Module) -> float:
    """FLOPs of one image's forward pass (see the module docstring)."""
    p = model.patch_embed.patch_size[0]
    n = model.patch_embed.num_patches
    t = n + model.num_prefix_tokens
    d = model.embed_dim
    h = model.blocks[0].mlp.fc1.out_features
    return 2 * n * 3 * p * p * d + len(model.blocks) * (2 * t * (4 * d * d + 2 * d * h) + 4 * t * t * d)


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def images_for(split: DecodedSplit, n: int) -> DecodedSplit:
    """``n`` images of the sample (repeated where ``n`` exceeds it)."""
    reps = -(-n // len(split))
    images = split.images.repeat(reps, 1, 1, 1)[:n]
    return DecodedSplit(images, split.labels.repeat(reps)[:n], split.classes, f"benchmark-{n}")


def timed(fn, repeats: int = 1) -> float:
    """Best of ``repeats`` wall-clock timings: the machine is shared, and other work only ever adds time."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bench(name: str, sample: DecodedSplit, seconds: float, batch_size: int) -> dict:
    torch.manual_seed(0)
    model = create_model(name).eval()
    flops = model_flops(model)
    chunk = images_per_pass(model, torch.device("cpu"), batch_size)
    warm = images_for(sample, chunk)
    per_image = timed(lambda: extract_features(model, warm, batch_size=batch_size, progress=False)) / chunk
    n = max(chunk, int(seconds / per_image) // chunk * chunk)
    data = images_for(sample, n)
    e2e = timed(lambda: extract_features(model, data, batch_size=batch_size, progress=False), repeats=3)
    x = eval_transform(model)(data.images[:chunk])
    with torch.inference_mode():
        fwd = timed(lambda: [pool_features(model, x, "cls") for _ in range(n // chunk)], repeats=3)
    return dict(
        model=name,
        img_size=model.patch_embed.img_size[0],
        patch_size=model.patch_embed.patch_size[0],
        embed_dim=model.embed_dim,
        depth=len(model.blocks),
        gflop_per_image=flops / 1e9,
        images=n,
        batch_size=batch_size,
        images_per_pass=chunk,
        seconds=e2e,
        images_per_s=n / e2e,
        gflops=n * flops / e2e / 1e9,
        forward_gflops=n * flops / fwd / 1e9,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="target length of each timed run")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "features.json")
    args = parser.parse_args()

    sample = embedded_sample("train")
    load_before = os.getloadavg()
    before = matmul_gflops()
    rows = []
    for name in MODELS:
        row = bench(name, sample, args.seconds, args.batch_size)
        after = matmul_gflops()
        # the reference is the matmul rate measured right around this model: other work on a shared machine comes
        # and goes, and slows the matmul as much as the model
        row["matmul_gflops"] = max(before, after)
        row["fraction_of_matmul"] = row["gflops"] / row["matmul_gflops"]
        row["forward_fraction_of_matmul"] = row["forward_gflops"] / row["matmul_gflops"]
        rows.append(row)
        before = after
    load_after = os.getloadavg()
    peak = max(r["matmul_gflops"] for r in rows)

    print(
        f"fp32 matmul (2048^2, best of 5), best in the run: {peak:.1f} GFLOP/s; torch threads: "
        f"{torch.get_num_threads()}; load average before/after: {load_before[0]:.2f}/{load_after[0]:.2f}"
    )
    print(f"{'model':32} {'GFLOP/img':>9} {'img/s':>8} {'GFLOP/s':>8} {'matmul':>7} {'of matmul':>9} {'forward':>8}")
    for r in rows:
        print(
            f"{r['model']:32} {r['gflop_per_image']:9.3f} {r['images_per_s']:8.1f} {r['gflops']:8.1f} "
            f"{r['matmul_gflops']:7.1f} {r['fraction_of_matmul']:9.1%} {r['forward_fraction_of_matmul']:8.1%}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = dict(
        benchmark="feature extraction (sslzoo.eval.features.extract_features, pool=cls, fp32, CPU)",
        data="CIFAR-10 (JPEG q75) embedded sample, decoded uint8",
        flops_formula=FLOPS_FORMULA,
        best_matmul_gflops=peak,
        machine=dict(processor=platform.processor() or platform.machine(), torch=torch.__version__,
                     threads=torch.get_num_threads(), cpus=os.cpu_count(),
                     load_average_1_5_15_before=load_before, load_average_1_5_15_after=load_after),
        results=rows,
    )
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
