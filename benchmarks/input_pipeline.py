"""The streaming input pipeline at 224 px against torchvision's, and against the ViT-S/16 training step it feeds.

    PYTHONPATH=. python benchmarks/input_pipeline.py --data PATH_TO/cifar10-jpg
    PYTHONPATH=. python benchmarks/input_pipeline.py --data PATH --images 96 --quick

1. A folder of mixed-size JPEGs is made once (CIFAR-10 train images upscaled to random sizes of 300-500 px, about
   ImageNet's; ``--folder`` keeps it between runs).
2. Each method's streaming pipeline (``training.data.StreamSource``, exactly as training builds it: decode, the
   method's crops and flips in the workers, uint8 batches, float on the device) is timed with 0, 1 and 2 workers
   against torchvision's ``ImageFolder`` + ``RandomResizedCrop`` + ``RandomHorizontalFlip`` + ``ToTensor`` cutting
   the same number and sizes of crops from the same files, in the same run: MoCo v3 and APS 2 x 224, DINO
   2 x 224 + 8 x 96 local crops, ADCLR 2 x 224 + one 96-px query crop. Target: >= 1.0x torchvision per worker count.
3. A ViT-S/16 224 px training step (MoCo v3, APS, DINO) in images/s, next to the pipeline's images/s, so a reader
   sees which one bounds training on this machine; the APS step against the MoCo v3 step (the paper's efficiency
   claim at ImageNet scale); and MoCo v3's step with ``--compile`` against without.

Prints tables and writes benchmarks/results/input_pipeline.json. Images/s counts source images (each with all its
crops); the step is measured on in-memory CIFAR images cropped to 224 px, so no decoding competes with it.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from training import distributed, pretrain
from training.config import resolve

sys.path.insert(0, str(Path(__file__).parent))
from train_step import measure  # noqa: E402  (the step timing shared with benchmarks/train_step.py)

RESULTS = Path(__file__).with_name("results") / "input_pipeline.json"
ARCH = "vit_small_patch16_224"
# (method, extra flags giving it the ImageNet crops, the torchvision reference's crops: (size, scale, count) ...)
PIPELINES = {
    "mocov3": ([], [(224, (0.2, 1.0), 2)]),
    "aps": ([], [(224, (0.2, 1.0), 2)]),
    "dino": (["--set", "framework.local_crops_number=8", "--set", "framework.local_crops_size=96"],
             [(224, (0.4, 1.0), 2), (96, (0.05, 0.4), 8)]),
    "adclr": (["--set", "method_args.size=96"], [(224, (0.25, 1.0), 2), (96, (0.05, 0.25), 1)]),
}


def make_folder(cifar: Path, folder: Path, count: int, seed: int = 0) -> Path:
    """``count`` CIFAR-10 train images upscaled to random sizes of 300-500 px, as an ImageFolder ``train/`` tree."""
    from PIL import Image

    train = folder / "train"
    if train.is_dir() and sum(1 for _ in train.rglob("*.jpg")) == count:
        return folder
    rng = random.Random(seed)
    classes = sorted(p for p in (cifar / "train").iterdir() if p.is_dir())
    for i in range(count):
        cls = classes[i % len(classes)]
        src = sorted(cls.iterdir())[i // len(classes)]
        out = train / cls.name / f"{i:06d}.jpg"
        out.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(src) as im:
            im.convert("RGB").resize((rng.randint(300, 500), rng.randint(300, 500)), Image.BICUBIC).save(
                out, quality=90)
    return folder


class TorchvisionCrops:
    """The reference transform: for each (size, scale, count), ``count`` RandomResizedCrop + flip + ToTensor."""

    def __init__(self, crops: list[tuple[int, tuple[float, float], int]]) -> None:
        from torchvision import transforms as T

        self.parts = [(T.Compose([T.RandomResizedCrop(size, scale=scale), T.RandomHorizontalFlip(), T.ToTensor()]),
                       count) for size, scale, count in crops]

    def __call__(self, image):
        return [t(image) for t, count in self.parts for _ in range(count)]


def images_per_s(epoch_batches, batch_size: int) -> float:
    """Steady-state rate: epoch 0 warms up (worker start-up, first calls), epoch 1 is timed."""
    for _ in epoch_batches(0):
        pass
    start, seen = time.perf_counter(), 0
    for _ in epoch_batches(1):
        seen += batch_size
    return seen / (time.perf_counter() - start)


def torchvision_rate(folder: Path, crops, workers: int, batch_size: int) -> float:
    from torchvision.datasets import ImageFolder

    data = ImageFolder(str(folder / "train"), transform=TorchvisionCrops(crops))
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True,
                        persistent_workers=workers > 0)
    return images_per_s(lambda epoch: loader, batch_size)


def sslzoo_rate(method: str, extra: list[str], folder: Path, workers: int, batch_size: int, cache: Path) -> float:
    argv = ["--method", method, "--arch", ARCH, "--data", str(folder), "--data-mode", "stream",
            "--workers", str(workers), "--batch-size", str(batch_size), "--steps", "1000", "--device", "cpu",
            "--output", "/nonexistent-benchmark-run", "--no-progress", "--set", f"cache_dir={cache}",
            "--set", "log.knn_every_epochs=0", *extra]
    tr = pretrain.build(resolve(argv), distributed.init_distributed("cpu"))
    try:
        return images_per_s(lambda epoch: tr.source.epoch_batches(epoch, 0), batch_size)
    finally:
        tr.source.close()


def pipeline_rows(args: argparse.Namespace, folder: Path) -> list[dict]:
    rows = []
    for method in args.methods:
        extra, crops = PIPELINES[method]
        for workers in args.workers:
            reference = torchvision_rate(folder, crops, workers, args.batch_size)
            ours = sslzoo_rate(method, extra, folder, workers, args.batch_size, args.folder / "cache")
            rows.append({"method": method, "workers": workers, "crops": [list(c) for c in crops],
                         "sslzoo_images_per_s": ours, "torchvision_images_per_s": reference,
                         "ratio": ours / reference})
            print(f"{method:8s} {workers:7d} {ours:12.1f} {reference:17.1f} {ours / reference:7.2f}", flush=True)
    return rows


def step_rows(args: argparse.Namespace) -> list[dict]:
    """ViT-S/16 224 px steps on in-memory CIFAR crops: MoCo v3, APS, DINO (8 local crops), MoCo v3 compiled."""
    ns = argparse.Namespace(data=str(args.data), arch=ARCH, batch_size=args.step_batch, reps=args.reps, pipeline_reps=2)
    runs = [("mocov3", "mocov3", []), ("aps", "aps", []), ("dino", "dino", PIPELINES["dino"][0]),
            ("mocov3 --compile", "mocov3", ["--compile"])]
    measure("mocov3", argparse.Namespace(**dict(vars(ns), reps=1, pipeline_reps=1)))  # process warm-up, discarded
    rows = []
    for name, method, extra in runs:
        if method not in args.methods and name != "mocov3":
            continue
        r = measure(method, ns, tuple(extra))
        r["run"] = name
        r["model_images_per_s"] = args.step_batch * 1000 / (r["ms_per_step"] * r["substeps"])
        rows.append(r)
        print(f"{name:18s} {r['ms_per_step']:9.0f} {r['model_images_per_s']:12.2f}", flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="CIFAR-10 ImageFolder (extracted ../shared/data tarball)")
    p.add_argument("--folder", type=Path, default=Path("/tmp/sslzoo-bench-pipeline"),
                   help="where the mixed-size JPEG folder is made (kept for the next run)")
    p.add_argument("--images", type=int, default=320)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, nargs="*", default=[0, 1, 2])
    p.add_argument("--methods", nargs="*", default=list(PIPELINES))
    p.add_argument("--step-batch", type=int, default=16)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="one timed step per run")
    args = p.parse_args()
    if args.quick:
        args.reps = 1
    folder = make_folder(args.data, args.folder, args.images)
    print(f"{'method':8s} {'workers':>7s} {'sslzoo img/s':>12s} {'torchvision img/s':>17s} {'ratio':>7s}")
    pipelines = pipeline_rows(args, folder)
    print(f"\n{'ViT-S/16 step':18s} {'ms/step':>9s} {'model img/s':>12s}")
    steps = step_rows(args)
    by_run = {r["run"]: r for r in steps}
    base = by_run["mocov3"]["ms_per_step"]
    best_pipeline = {m: max(r["sslzoo_images_per_s"] for r in pipelines if r["method"] == m) for m in args.methods}
    checks = {
        "min_ratio_to_torchvision": min(r["ratio"] for r in pipelines), "ratio_target": 1.0,
        "pipeline_over_model": {r["run"]: best_pipeline[r["method"]] / r["model_images_per_s"]
                                for r in steps if r["method"] in best_pipeline},
    }
    if "aps" in by_run:
        checks.update(aps_step_ratio_to_mocov3=by_run["aps"]["ms_per_step"] / base, aps_target=0.35)
    if "mocov3 --compile" in by_run:
        checks["compile_step_ratio"] = by_run["mocov3 --compile"]["ms_per_step"] / base
    print(json.dumps(checks, indent=2))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "arch": ARCH, "images": args.images, "batch_size": args.batch_size, "step_batch": args.step_batch,
        "reps": args.reps, "device": "cpu", "torch_threads": torch.get_num_threads(), "machine": platform.platform(),
        "processor": platform.processor(), "torch": torch.__version__, "pipelines": pipelines, "steps": steps,
        "checks": checks,
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
