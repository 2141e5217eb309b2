"""The evaluation protocols as one table: name -> the command that runs it, its runner, its settings, its report.

The table is data and imports nothing heavy, so the command line builds its choices, defaults and help from it
before torch, faiss or timm are loaded. Every protocol runs the same path (:func:`evaluate`): the data is opened
(where the protocol opens it before the model, so a bad layout is named before any weights are read), the model is
loaded (a name with its weights, a file, a module), and the runner extracts the frozen features (CLS or patch
tokens, cached) and scores them. A result always carries its protocol's name, which is how cards, the README table
and JSON files name their numbers (``knn:dino 52.7``).
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

SAMPLE = "sample"  # the CIFAR-10 sample shipped inside the package, as a --data value
DENSE_DATA = "cifar10-mosaic"  # the built-in dense benchmark (sslzoo.data.mosaic)
POOLS = ("cls", "avg", "cls+avg", "last4")


def _call(target: str) -> Callable[..., Any]:
    module, function = target.split(":")
    return getattr(importlib.import_module(module, __package__), function)


def _knn_detail(r: dict) -> str:
    return f"T={r['temperature']}, {r['num_train']} train / {r['num_test']} test images"


def _linear_detail(r: dict) -> str:
    best = r["best"]
    return f"best lr {best['lr']:g}, weight decay {best['weight_decay']:g} (chosen on a held-out part of train)"


def _dense_detail(r: dict) -> str:
    if r["protocol"] == "dense:linear":
        how = f"lr {r['best_lr']:g} chosen on {r['num_held_out']} held-out train images"
    else:
        how = f"k={r['k']}, T={r['temperature']:g}, bank of {r['bank_patches']} patches"
    return f"{how}; {r['num_train']} train / {r['num_val']} val images"


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol: what runs it and how its numbers are reported."""

    name: str
    command: str  # the ``sslzoo`` sub-command that runs it
    summary: str
    runner: str  # "module:function", called as function(model, data, **settings, **options)
    default_data: str
    columns: tuple[str, ...]  # the report's Markdown table: its header ...
    rows: Callable[[dict], list[tuple]]  # ... and its rows, read from a result
    detail: Callable[[dict], str]  # the settings the result was measured with, in one line
    headline: Callable[[dict], float]  # the one number a zoo table shows
    metric: str  # what the headline is, as cards and index.json name it
    settings: Mapping[str, Any] = field(default_factory=dict)  # keywords that make the runner this protocol
    defaults: Mapping[str, Any] = field(default_factory=dict)  # the protocol's published hyper-parameters
    opens_data: Optional[str] = None  # "module:function" that opens the data before the model is loaded

    def open_data(self, data: Any) -> Any:
        return _call(self.opens_data)(data) if self.opens_data and isinstance(data, str) else data

    def run(self, model: Any, data: Any = None, **options: Any) -> dict[str, Any]:
        """Score ``model`` (a name, a module or a loaded model) on ``data`` (default: the protocol's)."""
        data = self.open_data(self.default_data if data is None else data)
        return _call(self.runner)(model, data, **self.settings, **options)


def _knn(name: str, summary: str, k: tuple[int, ...], temperature: float, headline_k: int) -> Protocol:
    return Protocol(
        name=name, command="knn", summary=summary, runner=".protocols:knn_eval", default_data=SAMPLE,
        columns=("k", "top-1 (%)"), rows=lambda r: [(k, acc) for k, acc in r["top1"].items()], detail=_knn_detail,
        headline=lambda r: r["top1"][min(r["top1"], key=lambda kk: abs(kk - headline_k))],
        metric=f"top1@k{headline_k}", settings={"preset": name},
        defaults={"k": k, "temperature": temperature, "headline_k": headline_k},
    )


def _dense(name: str, summary: str) -> Protocol:
    return Protocol(
        name=name, command="dense", summary=summary, runner=".dense:dense_eval", default_data=DENSE_DATA,
        columns=("protocol", "mIoU (%)", "pixel acc. (%)"), rows=lambda r: [(r["protocol"], r["miou"], r["pixel_acc"])],
        detail=_dense_detail, headline=lambda r: r["miou"], metric="miou", settings={"protocol": name},
        opens_data=".dense:open_dense_splits",
    )


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    _knn("knn:dino", "weighted kNN on frozen CLS features, DINO's settings", (10, 20, 100, 200), 0.07, 20),
    _knn("knn:instdisc", "weighted kNN, InstDisc's settings (k 200, T 0.1)", (200,), 0.1, 200),
    Protocol(
        name="linear:frozen", command="linear", summary="a linear head on cached frozen features, lr swept at once",
        runner=".protocols:linear_eval", default_data=SAMPLE, columns=("split", "top-1 (%)"),
        rows=lambda r: [("val (train hold-out)", r["best"]["val_acc"]), ("test", r["best"]["test_acc"])],
        detail=_linear_detail, headline=lambda r: r["best"]["test_acc"], metric="top1",
    ),
    _dense("dense:linear", "a linear classifier per frozen patch token, logits upsampled; mIoU"),
    _dense("dense:nn", "nearest-neighbour labelling of patch tokens from a train bank (Hummingbird); mIoU"),
)}
KNN_PRESETS = {p.name: {"k": p.defaults["k"], "temperature": p.defaults["temperature"]}
               for p in PROTOCOLS.values() if p.command == "knn"}
HEADLINE_K = {p.name: p.defaults["headline_k"] for p in PROTOCOLS.values() if p.command == "knn"}
DENSE_PROTOCOLS = tuple(p.name for p in PROTOCOLS.values() if p.command == "dense")


def protocols_of(command: str) -> list[Protocol]:
    return [p for p in PROTOCOLS.values() if p.command == command]


def find_protocol(name: str) -> Protocol:
    """The protocol called ``name``; an unknown name is refused with the closest known ones."""
    from ..validation import InvalidOptionError

    if name in PROTOCOLS:
        return PROTOCOLS[name]
    close = difflib.get_close_matches(name, PROTOCOLS, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise InvalidOptionError(f"Unknown protocol {name!r}; the protocols are {', '.join(PROTOCOLS)}.{hint}")


def evaluate(model: Any, data: Any = None, *, protocol: str = "knn:dino", **options: Any) -> dict[str, Any]:
    """Run any protocol of :data:`PROTOCOLS` by name: ``evaluate("dino_vit_micro_patch8_32.cifar10",
    "cifar10-mosaic", protocol="dense:nn")``. The options are the runner's (:func:`~sslzoo.eval.protocols.knn_eval`,
    :func:`~sslzoo.eval.protocols.linear_eval`, :func:`~sslzoo.eval.dense.dense_eval`)."""
    return find_protocol(protocol).run(model, data, **options)


def _cell(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def report_lines(result: dict[str, Any]) -> list[str]:
    """The printed report of any protocol's result: what was measured, how, and its table in Markdown."""
    protocol = PROTOCOLS[result["protocol"]]
    data = "embedded CIFAR-10 (JPEG q75) sample" if result["data"] == SAMPLE else result["data"]
    where = (f"pool {result['pool']}" if "pool" in result
             else f"layers {result['layers']} · {result['size']} px (patch {result['patch']})")
    rows = protocol.rows(result)
    align = ["---:" if isinstance(v, (int, float)) else "---" for v in rows[0]] if rows else []
    return [f"model {result['model']} [{result['weights']}] · data {data} · {where}",
            f"{protocol.name}: {protocol.detail(result)}, {result['seconds']:.1f} s",
            "| " + " | ".join(protocol.columns) + " |", "|" + "|".join(align) + "|",
            *("| " + " | ".join(map(_cell, row)) + " |" for row in rows)]
