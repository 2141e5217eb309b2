"""The zoo's own published checkpoints: what ``sslzoo/zoo/index.json`` holds beyond the registry, and its tables.

The registry turns every entry of the index into a :class:`~sslzoo.registry.Weights` (see
:func:`sslzoo.registry.zoo_weights`); this module reads the rest of an entry (references, regression figure, run
provenance) and renders the zoo table that ``scripts/build_zoo.py`` writes into the README (a test keeps it in sync)
and the documentation site shows, and the table of every registered weights (sources, figures, licences) that
``sslzoo list --details`` prints line by line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import registry

TAG = "cifar10"
DATASET = "CIFAR-10 (JPEG q75)"
KS = (10, 20, 100, 200)
DINO_FAMILY = {"dino", "adclr"}  # the methods on the DINO framework


def _result(weights: dict[str, Any], protocol: str, metric: str) -> float:
    for r in weights["results"]:
        if r["protocol"] == protocol and r.get("metric", "top1") == metric:
            return float(r["value"])
    raise KeyError(f"{protocol} {metric}")


def views_sentence(runs: list[dict[str, Any]]) -> str:
    """What the zoo's training runs (``weights_run`` entries) shared, as a sentence for tables and cards: a comparison
    of methods holds only when they trained for one budget (epochs) with one base augmentation (``views.base``)."""
    bases = {run.get("views_base") for run in runs}
    budgets = sorted({round(float(run["epochs"])) for run in runs if "epochs" in run})
    shared = ["architecture", "batch"] + (["epochs"] if len(budgets) <= 1 else [])
    if len(bases) == 1 and None not in bases:
        sentence = (f"Every zoo method ran with the same {', '.join(shared)} and base views (`views.base: {bases.pop()}`), so the"
                    f" {'table compares methods at this budget' if len(budgets) <= 1 else 'table compares methods within one budget'}"
                    " and nothing else.")
    else:
        sentence = (f"Every zoo method ran with the same {', '.join(shared[:-1])} and {shared[-1]}, but with its own paper's training views (crop scales,"
                    " blur and solarisation differ), so the table compares methods and their views together.")
    if len(budgets) > 1:
        groups = {b: sorted(run["method"] for run in runs if round(float(run.get("epochs", -1))) == b
                            and "method" in run) for b in budgets}
        parts = [f"{b} epochs" + (f" ({', '.join(groups[b])})" if groups[b] else "") for b in budgets]
        sentence += f" The budgets differ ({'; '.join(parts)}): compare methods only at the same number of epochs."
        if groups[budgets[-1]] and set(groups[budgets[-1]]) <= DINO_FAMILY:
            sentence += (" The DINO family learns more slowly at the start (the online kNN curves in"
                         " `MODEL_CARDS/knn_vs_epoch.png`), so its runs trained longer.")
    return sentence


def zoo_views_sentence(entries: list[dict[str, Any]]) -> str:
    """:func:`views_sentence` over every run of the index's ``entries``: what the whole zoo shared (a card says it
    too, so that a card never claims one budget where the zoo has two)."""
    return views_sentence([dict(e["weights_run"], method=registry.ARCHITECTURES[e["architecture"]].method.name)
                           for e in entries])


def dense_pair(dense: dict[str, Any] | None) -> str:
    """``dense:linear / dense:nn`` mIoU of an index entry's ``dense`` record, or a dash where it has none."""
    if not dense:
        return "-"
    return f"{dense['dense:linear']['miou']:.2f} / {dense['dense:nn']['miou']:.2f}"


def zoo_table(index: Path = registry.ZOO_INDEX, card_link: str = "MODEL_CARDS/{name}.md") -> str:
    """A markdown table of the published checkpoints with their measured accuracies and references; each name links
    to ``card_link`` (the README's cards sit in ``MODEL_CARDS/``, the site's beside its zoo page)."""
    entries = registry.zoo_entries(index)
    if not entries:
        return "_No checkpoints published yet._"
    dense = any("dense" in e for e in entries)
    head = "| model | method | epochs | CPU minutes | kNN@20 | linear | random init kNN@20 / linear |"
    lines = [head + (" dense:linear / dense:nn mIoU |" if dense else ""),
             "|---|---|---|---|---|---|---|" + ("---|" if dense else "")]
    for e in entries:
        w, run, ref = e["weights"], e["weights_run"], e["references"]["random_init"]
        name = f"{e['architecture']}.{w['tag']}"
        method = registry.ARCHITECTURES[e["architecture"]].method.name
        lines.append(
            f"| [`{name}`]({card_link.format(name=name)}) | {method} | {run['epochs']:g} | {run['wall_clock_s'] / 60:.1f} |"
            f" {_result(w, 'knn:dino', 'top1@k20'):.2f} | {_result(w, 'linear:frozen', 'top1'):.2f} |"
            f" {ref['knn']['20']:.2f} / {ref['linear']:.2f} |" + (f" {dense_pair(e.get('dense'))} |" if dense else "")
        )
    pixels = entries[0]["references"]["raw_pixels"]
    lines += ["", f"Top-1 (%) on the full {DATASET} test split: `knn:dino` with k = 20 and `linear:frozen`. Raw pixels"
              f" score {pixels['knn']['20']:.2f} (kNN@20) and {pixels['linear']:.2f} (linear). Every model is a"
              " micro ViT/8 (width 128, depth 4) trained on a 2-core CPU. "
              + zoo_views_sentence(entries)]
    if dense:
        random = entries[0]["references"]["random_init"]
        data = next(e["dense"]["data"] for e in entries if "dense" in e)
        lines[-1] += (f" Dense: mIoU (%) of the patch tokens on {data}, `dense:linear` / `dense:nn`; raw pixels (8 px"
                      f" patches) {dense_pair(pixels.get('dense'))}, random init"
                      f" (`{(random.get('dense') or {}).get('architecture', '-')}`, seed 0)"
                      f" {dense_pair(random.get('dense'))}.")
    return "\n".join(lines)


def weights_source(weights: registry.Weights, sep: str = " | ") -> str:
    """Where a registered file comes from, in the order they are tried: the Hugging Face hub, then a URL."""
    places = ([f"hf-hub:{weights.hf_hub_id}"] if weights.hf_hub_id else []) + ([weights.url] if weights.url else [])
    return sep.join(places) or "shipped with sslzoo"


def weights_figures(weights: registry.Weights) -> str:
    """Every figure of a registered file, each marked measured (by this repository) or reported (by its authors)."""
    return ", ".join(f"{r.protocol} {r.value:.1f} ({r.source})" for r in weights.results)


def weights_table(pattern: str = "*") -> str:
    """A markdown table of the registered weights matching ``pattern``: name, source, figures and licence."""
    lines = ["| name | source (first found wins) | figures | licence |", "|---|---|---|---|"]
    for name in registry.list_models(pattern, pretrained=True):
        w = registry.resolve(name).weights
        lines.append(f"| `{name}` | {weights_source(w, sep=', then ')} | {weights_figures(w) or '-'} | {w.licence} |")
    return "\n".join(lines)
