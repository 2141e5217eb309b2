"""Model cards: a ``README.md`` with YAML front matter, as the Hugging Face hub and timm expect."""

from __future__ import annotations

from typing import Any, Optional

import yaml

from . import registry

CARD_KEYS = ("title", "description", "method", "datasets", "licence", "pipeline_tag", "tags", "results", "sections")
FEATURES = "image-feature-extraction"  # the pipeline of a backbone; a fine-tuned classifier says image-classification


def _front_matter(card: dict[str, Any], name: str) -> dict[str, Any]:
    results = card.get("results") or []
    pipeline = card.get("pipeline_tag") or FEATURES
    tags = [pipeline, "vision-transformer", "self-supervised", "sslzoo", "timm"]
    tags += [t for t in [card.get("method")] + list(card.get("tags") or []) if t and t not in tags]
    meta: dict[str, Any] = {
        "library_name": "timm",
        "pipeline_tag": pipeline,
        "license": card.get("licence") or "apache-2.0",
        "tags": tags,
    }
    if card.get("datasets"):
        meta["datasets"] = list(card["datasets"])
    if results:
        meta["metrics"] = ["accuracy"]
        meta["model-index"] = [
            {
                "name": name,
                "results": [
                    {
                        "task": {"type": "image-classification"},
                        "dataset": {"name": r["dataset"], "type": r["dataset"]},
                        "metrics": [
                            {"type": "accuracy", "name": f"{r['protocol']} {r.get('metric', 'top1')}", "value": r["value"]}
                        ],
                        "source": {"name": r.get("source", "measured")},
                    }
                    for r in results
                ],
            }
        ]
    return meta


def render_card(name: str, card: Optional[dict[str, Any]] = None) -> str:
    """Render a model card.

    Args:
        name: the model's sslzoo name (``aps_vit_tiny_patch2_32.cifar10``) or folder name.
        card: optional fields: ``title``, ``description``, ``method`` (a registry method name), ``datasets``,
            ``licence``, ``pipeline_tag`` (default image-feature-extraction), ``tags``, ``results`` (dicts with dataset, protocol, value, metric, source) and ``sections``
            (``{heading: markdown}``, rendered in order).
    """
    card = dict(card or {})
    unknown = set(card) - set(CARD_KEYS)
    if unknown:
        raise ValueError(f"Unknown model card fields {sorted(unknown)}; known: {', '.join(CARD_KEYS)}.")
    method = registry.METHODS.get(card.get("method") or "")
    lines = ["---", yaml.safe_dump(_front_matter(card, name), sort_keys=False).rstrip(), "---", ""]
    lines += [f"# {card.get('title') or name}", ""]
    if card.get("description"):
        lines += [card["description"], ""]
    if method:
        lines += [
            "## Method",
            "",
            f"{method.title}. {method.paper}. arXiv:{method.arxiv}. Code: {method.code}.",
            "",
        ]
    if card.get("results"):
        lines += ["## Results", "", "| dataset | protocol | metric | value | source |", "|---|---|---|---|---|"]
        lines += [
            f"| {r['dataset']} | {r['protocol']} | {r.get('metric', 'top1')} | {r['value']:.2f} | {r.get('source', 'measured')} |"
            for r in card["results"]
        ]
        lines.append("")
    by_name = f"  # or sslzoo.create_model('{name}', pretrained=True)" if registry.is_registered(name) else ""
    lines += [
        "## How to load",
        "",
        "```python",
        "import sslzoo, timm",
        f"model = sslzoo.create_model('local-dir:PATH_TO_THIS_FOLDER'){by_name}",
        "model = timm.create_model('local-dir:PATH_TO_THIS_FOLDER', pretrained=True)  # plain timm works too",
        "```",
        "",
    ]
    for heading, body in (card.get("sections") or {}).items():
        lines += [f"## {heading}", "", str(body).rstrip(), ""]
    return "\n".join(lines)


def read_front_matter(text: str) -> dict[str, Any]:
    """The YAML front matter of a card (empty if it has none)."""
    if not text.startswith("---\n"):
        return {}
    end = text.find("\n---", 4)
    if end < 0:
        return {}
    return yaml.safe_load(text[4:end]) or {}
