"""Build the zoo from finished training runs: publish, measure, register, and write cards, plots and the README table.

    python scripts/build_zoo.py --runs RUNS_DIR --data CIFAR10_ROOT [--methods aps dino ...]

``RUNS_DIR/<method>`` are run folders of ``sslzoo pretrain --method <method> --profile zoo``. For each:

1. ``training.publish`` writes the backbone into ``src/sslzoo/zoo/<arch>.cifar10/`` (the full checkpoint with heads
   stays in the run folder: the repository ships backbones only, a few MB each);
2. the stored weights are measured on the full CIFAR-10 test split with ``knn:dino`` (k = 10, 20, 100, 200) and
   ``linear:frozen``, and on the package's embedded sample (the regression figure); the randomly initialised
   architecture and raw pixels are measured the same way as references;
3. ``src/sslzoo/zoo/index.json`` records every entry for the registry; ``MODEL_CARDS/<name>.md`` (also the hub
   folder's README.md), ``MODEL_CARDS/knn_vs_epoch.png``, ``MODEL_CARDS/attention.png`` and the README zoo table are
   regenerated.

Measurements are cached in ``RUNS_DIR/measurements.json`` keyed by the weights' sha256, so re-running after a change
of text only re-renders. Needs the ``plots`` extra (matplotlib) for the curve plot.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO)]

from sslzoo import files, preprocessing, registry  # noqa: E402
from sslzoo.weights import local_hubs as hub  # noqa: E402
from sslzoo.attention import attention_figure  # noqa: E402
from sslzoo.card import render_card  # noqa: E402
from sslzoo.data import decoded_split, embedded_sample  # noqa: E402
from sslzoo.eval.knn import knn_classify  # noqa: E402
from sslzoo.eval.linear import linear_probe  # noqa: E402
from sslzoo.eval.features import weights_sha256  # noqa: E402
from sslzoo.eval.protocol_table import DENSE_PROTOCOLS  # noqa: E402
from sslzoo.eval.protocols import LoadedModel, knn_eval, linear_eval, load_for_eval  # noqa: E402
from sslzoo.models import create_model  # noqa: E402
from sslzoo.published import DATASET, KS, TAG, zoo_table, zoo_views_sentence  # noqa: E402
from training.publish import card_fields, publish, read_log, read_run  # noqa: E402

METHOD_ORDER = ("mocov3", "aps", "patchmix", "ccrop", "dino", "adclr")
BASELINE = {"aps": "mocov3", "patchmix": "mocov3", "ccrop": "mocov3", "adclr": "dino"}
CARDS = REPO / "MODEL_CARDS"
DENSE_RESULTS = REPO / "benchmarks" / "results" / "dense_zoo.json"  # written by scripts/dense_zoo.py
README = REPO / "README.md"
# The papers' own figures (METHODS.md), to say how far a small CPU run is from them.
PAPER_NOTES = {
    "aps": "The authors report fine-tuning only on CIFAR: ViT-T/2 97.2 % on CIFAR-10 after 1600 epochs (METHODS.md"
           " 1.7); their code has no kNN or linear probe.",
    "patchmix": "The authors report ViT-T/2 on CIFAR-10 after 800 epochs at batch 512: linear 94.4 %, kNN 92.9 %"
                " (their kNN feature is the CLS through a random 1000-d head; METHODS.md 2.8).",
    "ccrop": "The paper reports +0.4 to +2.0 points over SimCLR, MoCo, BYOL and SimSiam with ResNets on CIFAR-10/100,"
             " Tiny ImageNet and STL-10; it has no ViT experiments (METHODS.md 3.5). sslzoo runs it on MoCo v3.",
    "adclr": "The paper reports ImageNet-1K linear 77.5 % for ViT-S/16 (DINO 77.0 %); no CIFAR experiments are known"
             " (METHODS.md 4.4).",
    "mocov3": "MoCo v3's paper reports ImageNet-1K only (ViT-S/16 linear 73.2 %, recalled, METHODS.md 6); the CIFAR"
              " ViT baselines of the APS and PatchMix papers are not available.",
    "dino": "DINO's paper reports ImageNet-1K only (ViT-S/16 linear 77.0 %, 20-NN 74.5 %, recalled, METHODS.md 6).",
}


def _architecture(method: str) -> str:
    return f"{method}_vit_micro_patch8_32"


def _median_images_per_s(run: Path) -> float:
    with open(run / "log.csv", newline="", encoding="utf-8") as f:
        rates = sorted(float(r["images_per_s"]) for r in csv.DictReader(f))
    return rates[len(rates) // 2]


def _knn_curve(run: Path) -> list[tuple[float, float]]:
    with open(run / "log.csv", newline="", encoding="utf-8") as f:
        return [(float(r["epoch"]), float(r["knn_top1"])) for r in csv.DictReader(f) if r.get("knn_top1")]


def training_flops(cfg: dict[str, Any]) -> float:
    """FLOPs of one training iteration (views, forward and backward of every sub-step) at the run's settings."""
    from torch.utils.flop_counter import FlopCounterMode

    from training import distributed, loop, pretrain

    cfg = json.loads(json.dumps(cfg))
    cfg.update(steps=1, device="cpu", output=str(Path(cfg["output"]) / "_flops"), resume=None)
    cfg["log"].update(knn_every_epochs=0, knn_every_steps=0, progress=False)
    tr = pretrain.build(cfg, distributed.init_distributed("cpu"))
    batch = next(iter(tr.source.epoch_batches(0, 0)))
    with FlopCounterMode(display=False) as counter:
        loop.train_iteration(tr, batch)
    return float(counter.get_total_flops())


def forward_flops(model: torch.nn.Module) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(torch.zeros(1, 3, 32, 32))
    return float(counter.get_total_flops())


def _measure_model(loaded: LoadedModel, data: str) -> dict[str, Any]:
    knn = knn_eval(loaded, data, k=KS)
    linear = linear_eval(loaded, data)
    sample = knn_eval(loaded, "sample", k=(20,))
    return {"knn": {str(k): v for k, v in knn["top1"].items()}, "linear": linear["best"]["test_acc"],
            "linear_best": linear["best"], "sample_knn20": sample["top1"][20], "num_test": knn["num_test"]}


def _pixels(data: str) -> dict[str, Any]:
    mean = torch.tensor(preprocessing.CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(preprocessing.CIFAR10_STD).view(1, 3, 1, 1)

    def features(split):
        d = decoded_split(data, split)
        return ((d.images.float() / 255 - mean) / std).flatten(1), d.labels

    train_x, train_y = features("train")
    test_x, test_y = features("test")
    preds = knn_classify(train_x, train_y, test_x, k=KS, temperature=0.07)
    linear = linear_probe(train_x, train_y, test_x, test_y)
    return {"knn": {str(k): 100.0 * (p == test_y).float().mean().item() for k, p in preds.items()},
            "linear": linear["best"]["test_acc"], "linear_best": linear["best"], "num_test": len(test_y)}


def _cached(cache: dict[str, Any], key: str, compute) -> dict[str, Any]:
    if key not in cache:
        cache[key] = compute()
    return cache[key]


def _results(m: dict[str, Any]) -> list[dict[str, Any]]:
    rows = [dict(dataset=DATASET, protocol="knn:dino", value=round(m["knn"][str(k)], 2), metric=f"top1@k{k}")
            for k in KS]
    rows.append(dict(dataset=DATASET, protocol="linear:frozen", value=round(m["linear"], 2), metric="top1"))
    return rows


def _reference_section(name: str, m: dict[str, Any], random: dict[str, Any], pixels: dict[str, Any],
                       baseline: tuple[str, dict[str, Any]] | None) -> str:
    lines = ["| model | kNN@10 | kNN@20 | kNN@100 | kNN@200 | linear |", "|---|---|---|---|---|---|"]
    rows = [(f"this model ({name})", m), ("same architecture, random init (seed 0)", random),
            ("raw pixels (3072-d, normalised)", pixels)]
    if baseline:
        rows.append((f"framework baseline {baseline[0]}", baseline[1]))
    for label, r in rows:
        lines.append(f"| {label} | " + " | ".join(f"{r['knn'][str(k)]:.2f}" for k in KS) + f" | {r['linear']:.2f} |")
    return "\n".join(lines) + f"\n\nAll on the {m['num_test']:,} images of the CIFAR-10 (JPEG q75) test split; kNN is" \
        " `knn:dino` (cosine, T = 0.07, 50,000 training images as the bank), linear is `linear:frozen` (a linear head" \
        " on frozen CLS features, learning rate chosen on 10 % of train)."


def _against_pixels(m: dict[str, Any], pixels: dict[str, Any]) -> str:
    knn, px_knn, lin, px_lin = m["knn"]["20"], pixels["knn"]["20"], m["linear"], pixels["linear"]
    knn_word = "above" if knn > px_knn else "below"
    lin_word = "above" if lin > px_lin else "below"
    return (f"At this budget the model's kNN@20 is {knn_word} that of raw pixels ({knn:.2f} vs {px_knn:.2f}) and its"
            f" linear probe {lin_word} theirs ({lin:.2f} vs {px_lin:.2f}). ")


def _card(method: str, entry: dict[str, Any], zoo: str, run_cfg: dict[str, Any], env: dict[str, Any], ckpt: dict[str, Any],
          log: list[dict[str, str]], m: dict[str, Any], random: dict[str, Any], pixels: dict[str, Any],
          baseline) -> dict[str, Any]:
    arch = registry.ARCHITECTURES[entry["architecture"]]
    name = f"{entry['architecture']}.{TAG}"
    run = entry["weights_run"]
    shown = dict(run_cfg, data=f"{DATASET} train split")  # not the path on the machine that trained it
    provenance = card_fields(shown, env, ckpt, log)
    compute = (f"Forward pass: {run['forward_gflops']:.4f} GFLOPs per 32 px image. One training iteration (batch"
               f" {run_cfg['batch_size']}, views, forward and backward of every sub-step): {run['iteration_gflops']:.1f}"
               f" GFLOPs; the whole run: {run['total_pflops'] * 1000:.1f} TFLOPs in {run['wall_clock_s'] / 60:.1f} minutes"
               f" of fp32 on {run['hardware']} (median {run['median_images_per_s']:.0f} images/s; the wall-clock includes"
               " whatever else ran on the machine at the time).")
    limitations = (
        f"A small-budget CPU run: {run['epochs']} epochs of a {run['parameters'] / 1e6:.2f} M-parameter ViT (width"
        " 128, depth 4, patch 8: 16 patch tokens) at 32 px, where the papers train ViT-T/2 and larger for 500 to 3200"
        f" epochs on GPUs. {zoo} It does not predict the methods' ranking at the papers'"
        " budgets. Heads are shrunk (512"
        " hidden, 128 out; DINO 1024 prototypes) and the learning-rate warm-up is one epoch. The data is CIFAR-10"
        " re-encoded as JPEG q75, which costs a little accuracy against the lossless originals. "
        + _against_pixels(m, pixels) + PAPER_NOTES[method])
    return {
        "title": f"{name}: {arch.method.title.split(' (')[0]} ({method}) on CIFAR-10",
        "description": f"{entry['weights']['description']}. Pre-trained by sslzoo's own recipe"
                       f" (`training/recipes/{method}.yaml`, profile `zoo`) on the 50,000 CIFAR-10 training images.",
        "method": method,
        "datasets": ["cifar10"],
        "licence": "apache-2.0",
        "results": _results(m),
        "sections": {
            "Load by name (offline: the weights ship with the package)": "```python\nimport sslzoo, torch\n"
                f"model = sslzoo.create_model('{name}', pretrained=True)\n"
                f"model = torch.hub.load('PATH_TO_SSLZOO_CHECKOUT', '{entry['architecture']}', source='local',"
                " pretrained=True)\n```",
            "Against references": _reference_section(name, m, random, pixels, baseline),
            **({"Dense evaluation": _dense_section(name, entry)} if "dense" in entry else {}),
            "Compute": compute,
            "Training run": provenance["sections"]["Training run"],
            "Limitations and the papers' numbers": limitations,
            "Regression": f"kNN@20 on the package's embedded CIFAR-10 sample (500 train, 100 test images):"
                          f" {m['sample_knn20']:.2f} %. `tests/test_zoo.py` checks this figure on every CI run.",
        },
    }


def _dense_record(measured: dict[str, Any], data: str) -> dict[str, Any]:
    return {"data": data, **{p: {k: measured[p][k] for k in ("miou", "pixel_acc")} for p in DENSE_PROTOCOLS}}


def attach_dense(entries: dict[str, dict[str, Any]], results: dict[str, Any]) -> list[str]:
    """Copy scripts/dense_zoo.py's figures into the index entries whose weights they measured (the state-dict hash
    must match: a re-trained checkpoint needs ``dense_zoo.py --models NAME`` again); returns the names left without."""
    measured, data = results.get("entries", {}), results.get("data", "cifar10-mosaic")
    pixels, random = measured.get("raw pixels"), measured.get("random init")
    stale = []
    for arch, entry in entries.items():
        name = f"{arch}.{entry['weights']['tag']}"
        m = measured.get(name)
        if m and m["weights_sha256"] == weights_sha256(create_model(f"local-dir:{hub.SHIPPED_HUB / name}")):
            entry["dense"] = _dense_record(m, data)
        else:
            entry.pop("dense", None)
            stale.append(name)
        if pixels:
            entry["references"]["raw_pixels"]["dense"] = _dense_record(pixels, data)
        if random:
            entry["references"]["random_init"]["dense"] = dict(_dense_record(random, data),
                                                               architecture=random["model"])
    return stale


def _dense_section(name: str, entry: dict[str, Any]) -> str:
    refs = entry["references"]
    rows = [(f"this model ({name})", entry["dense"]),
            (f"random init (`{refs['random_init']['dense'].get('architecture', '-')}`, seed 0)",
             refs["random_init"].get("dense")),
            ("raw pixels (8 px patches of normalised pixels)", refs["raw_pixels"].get("dense"))]
    lines = ["| model | dense:linear mIoU | pixel acc. | dense:nn mIoU | pixel acc. |", "|---|---|---|---|---|"]
    for label, d in rows:
        if d:
            lin, nn = d["dense:linear"], d["dense:nn"]
            lines.append(f"| {label} | {lin['miou']:.2f} | {lin['pixel_acc']:.2f} | {nn['miou']:.2f} |"
                         f" {nn['pixel_acc']:.2f} |")
    return "\n".join(lines) + (
        f"\n\nPatch tokens of the last block on {entry['dense']['data']}: `dense:linear` is a linear classifier per token"
        " (learning rate chosen on a held-out slice of train), `dense:nn` the in-context nearest-neighbour labelling of"
        " Hummingbird; mIoU (%) from one confusion matrix over the whole val split at full mask resolution."
        " `python scripts/dense_zoo.py --cifar10 PATH` measures them (`benchmarks/results/dense_zoo.json`).")


def _set_zoo_sentence(text: str, sentence: str) -> str:
    """A card's markdown with its sentence on what the zoo's runs shared (from "Every zoo method ran" up to "It does
    not predict") replaced by ``sentence``."""
    start, end = text.find("Every zoo method ran"), text.find(" It does not predict")
    return text if start < 0 or end < start else text[:start] + sentence + text[end:]


def _set_section(text: str, heading: str, body: str, before: str = "## Compute") -> str:
    """A card's markdown with section ``heading`` replaced, or inserted before the ``before`` heading."""
    start = text.find(f"## {heading}\n")
    block = f"## {heading}\n\n{body.rstrip()}\n\n"
    if start >= 0:
        end = text.find("\n## ", start + 1)
        return text[:start] + block + (text[end + 1:] if end >= 0 else "")
    at = text.index(before)
    return text[:at] + block + text[at:]


def _plot_curves(runs: dict[str, dict[str, Any]], path: Path) -> None:
    """The online kNN curve of every run the index records (``weights_run.knn_curve``), one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for method, run in runs.items():
        points = run["knn_curve"]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3,
                label=f"{method} ({run['epochs']:g} epochs)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("online kNN@20 top-1 (%)")
    monitors = {(r["knn_monitor"]["bank"], r["knn_monitor"]["queries"]) for r in runs.values()}
    monitor = "; ".join(f"{b:,}-image bank, {q:,} test images" for b, q in sorted(monitors))
    batches = sorted({r["batch_size"] for r in runs.values()})
    ax.set_title(f"CIFAR-10 zoo runs: micro ViT/8, batch {', '.join(map(str, batches))}\n(monitor: {monitor})",
                 fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _attention_sheet(names: list[str], path: Path, images: list[Path]) -> None:
    from PIL import Image

    from PIL import ImageDraw

    label_h = 14
    rows = [attention_figure(create_model(name, pretrained=True), images, scale=3) for name in names]
    sheet = Image.new("RGB", (max(r.width for r in rows), sum(r.height + label_h + 6 for r in rows)), "white")
    draw = ImageDraw.Draw(sheet)
    top = 0
    for name, r in zip(names, rows):
        draw.text((2, top + 1), f"{name}: image, then CLS attention of the last block per head", fill="black")
        sheet.paste(r, (0, top + label_h))
        top += r.height + label_h + 6
    sheet.save(path)


def _sample_images(out: Path, count: int = 3) -> list[Path]:
    sample = embedded_sample("test")
    out.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    paths = []
    for i in range(count):
        idx = int((sample.labels == i * 3).nonzero()[0])
        p = out / f"test_{i}.png"
        Image.fromarray(sample.images[idx].permute(1, 2, 0).numpy()).save(p)
        paths.append(p)
    return paths


def _replace_between(text: str, start: str, end: str, body: str) -> str:
    a, b = text.index(start) + len(start), text.index(end)
    return text[:a] + "\n" + body.rstrip() + "\n" + text[b:]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", required=True, type=Path)
    p.add_argument("--data", required=True, help="the CIFAR-10 root (train/ and test/)")
    p.add_argument("--methods", nargs="*", default=list(METHOD_ORDER))
    args = p.parse_args(argv)
    cache_path = args.runs / "measurements.json"
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    index_path = registry.ZOO_INDEX
    entries = {e["architecture"]: e for e in registry.zoo_entries(index_path)}
    pixels = _cached(cache, "pixels", lambda: _pixels(args.data))
    cache_path.write_text(json.dumps(cache, indent=1))
    loaded_runs = {}
    for method in args.methods:
        run = args.runs / method
        arch = _architecture(method)
        name = f"{arch}.{TAG}"
        folder = hub.SHIPPED_HUB / name
        cfg, env, ckpt = read_run(run)
        ckpt = {k: ckpt[k] for k in ("iteration", "elapsed", "iters_per_epoch", "world_size", "global_batch",
                                     "num_images", "replaced_images", "wall_clock") if k in ckpt}
        if "num_images" not in ckpt:  # a run from before checkpoints recorded it: the split its config names
            ckpt["num_images"] = min(len(decoded_split(args.data, "train")), cfg.get("train_limit") or 1 << 62)
        publish(run, folder, name=name, full=False)
        sha = files.sha256_file(folder / hub.WEIGHTS_NAME)
        model = create_model(f"local-dir:{folder}")  # the folder's own config: the run's normalisation
        m = _cached(cache, f"{method}:{sha}", lambda: _measure_model(LoadedModel(model, name, f"sha256 {sha[:12]}"),
                                                                     args.data))
        random = _cached(cache, f"random:{arch}", lambda: _measure_model(load_for_eval(arch, random_init=True),
                                                                        args.data))
        if f"flops:{method}" not in cache:
            cache[f"flops:{method}"] = {"iteration": training_flops(cfg), "forward": forward_flops(model)}
        cache_path.write_text(json.dumps(cache, indent=1))
        flops = cache[f"flops:{method}"]
        epochs = round(ckpt["iteration"] / ckpt["iters_per_epoch"], 3)
        hw = env["hardware"]
        hardware = f"{hw['cpu_count']}-core CPU ({hw['processor']}), {hw['torch_threads']} torch threads"
        data_cfg = dict(model.pretrained_cfg)
        entries[arch] = {
            "architecture": arch,
            "weights": {
                "tag": TAG,
                "description": f"{registry.METHODS[method].title.split(' (')[0]} ({method}), micro ViT/8 pre-trained"
                               f" on CIFAR-10 by sslzoo for {epochs:g} epochs on a CPU",
                "pretrain_data": DATASET,
                "pretrain_epochs": int(round(epochs)),
                "sha256": sha,
                "licence": "apache-2.0",
                "input_size": list(data_cfg["input_size"]),
                "interpolation": data_cfg["interpolation"],
                "crop_pct": data_cfg["crop_pct"],
                "mean": list(data_cfg["mean"]),
                "std": list(data_cfg["std"]),
                "results": _results(m),
                "notes": f"sslzoo's own small-budget CPU run (recipe {method}, profile zoo); see MODEL_CARDS/{name}.md.",
            },
            "weights_run": {
                "recipe": f"training/recipes/{method}.yaml", "profile": cfg.get("profile"), "seed": cfg["seed"],
                "batch_size": cfg["batch_size"], "epochs": epochs, "iterations": ckpt["iteration"],
                "views_base": (cfg.get("views") or {}).get("base"),
                "wall_clock_s": round(float(ckpt["elapsed"]), 1), "hardware": hardware,
                "forward_gflops": flops["forward"] / 1e9, "iteration_gflops": flops["iteration"] / 1e9,
                "total_pflops": flops["iteration"] * ckpt["iteration"] / 1e15,
                "median_images_per_s": round(_median_images_per_s(run), 1),
                "parameters": sum(p.numel() for p in model.parameters()),
                "git_revision": env.get("git_revision"), "torch": env.get("torch"),
                # kept in the index so the curve plot can be redrawn when this run folder is gone
                "knn_curve": [[round(e, 3), round(v, 2)] for e, v in _knn_curve(run)],
                "knn_monitor": {"bank": cfg["log"]["knn_bank"], "queries": cfg["log"]["knn_queries"]},
            },
            "references": {"random_init": {"knn": random["knn"], "linear": random["linear"]},
                           "raw_pixels": {"knn": pixels["knn"], "linear": pixels["linear"]}},
            "regression": {"data": "sample", "protocol": "knn:dino", "k": 20, "top1": m["sample_knn20"],
                           "tolerance": 1.0},
        }
        loaded_runs[method] = (cfg, env, ckpt, read_log(run, ckpt["iteration"]), m, random)
    dense_results = json.loads(DENSE_RESULTS.read_text()) if DENSE_RESULTS.is_file() else {}
    for name in attach_dense(entries, dense_results) if dense_results else []:
        print(f"no dense figures for {name} (weights changed or never measured): run"
              f" python scripts/dense_zoo.py --cifar10 PATH --models {name}", file=sys.stderr)
    ordered = [entries[_architecture(mm)] for mm in METHOD_ORDER if _architecture(mm) in entries]
    ordered += [e for a, e in sorted(entries.items()) if e not in ordered]
    index = {"format": 1, "dataset": DATASET, "models": ordered}
    files.write_text_atomic(index_path, json.dumps(index, indent=2) + "\n")

    CARDS.mkdir(exist_ok=True)
    for method, (cfg, env, ckpt, log, m, random) in loaded_runs.items():
        entry = entries[_architecture(method)]
        base = BASELINE.get(method)
        base_entry = entries.get(_architecture(base)) if base else None
        base_key = f"{base}:{base_entry['weights']['sha256']}" if base_entry else None
        baseline = (base, cache[base_key]) if base_key in cache else None
        card = _card(method, entry, zoo_views_sentence(ordered), cfg, env, ckpt, log, m, random, pixels, baseline)
        name = f"{entry['architecture']}.{TAG}"
        text = render_card(name, card)
        files.write_text_atomic(CARDS / f"{name}.md", text)
        files.write_text_atomic(hub.SHIPPED_HUB / name / hub.CARD_NAME, text)
    for entry in ordered:  # the cards of runs not rebuilt now: their dense section and what the zoo shared, in place
        name = f"{entry['architecture']}.{TAG}"
        if registry.ARCHITECTURES[entry["architecture"]].method.name in loaded_runs:
            continue
        text = _set_zoo_sentence((CARDS / f"{name}.md").read_text(encoding="utf-8"), zoo_views_sentence(ordered))
        if "dense" in entry:
            text = _set_section(text, "Dense evaluation", _dense_section(name, entry))
        files.write_text_atomic(CARDS / f"{name}.md", text)
        files.write_text_atomic(hub.SHIPPED_HUB / name / hub.CARD_NAME, text)
    curves = {e["architecture"].split("_vit_")[0]: e["weights_run"] for e in ordered if "knn_curve" in e["weights_run"]}
    if curves:
        _plot_curves(curves, CARDS / "knn_vs_epoch.png")
    # The registry builds its weights table from index.json on first use: drop it so that the pictures load the new
    # entries by name (a module reload would keep the old table, which lives in the module's namespace).
    vars(registry).pop("WEIGHTS", None)
    images = _sample_images(args.runs / "attention_inputs")
    names = [f"{_architecture(mm)}.{TAG}" for mm in METHOD_ORDER if _architecture(mm) in entries]
    _attention_sheet(names, CARDS / "attention.png", images)
    readme = README.read_text(encoding="utf-8")
    readme = _replace_between(readme, "<!-- zoo:start -->", "<!-- zoo:end -->", zoo_table(index_path))
    files.write_text_atomic(README, readme)
    print(zoo_table(index_path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
