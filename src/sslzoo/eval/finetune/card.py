"""What a fine-tuned folder says about itself: its configs describe the classifier, and its card the run."""

from __future__ import annotations

from typing import Any

import torch

from .recipes import FinetuneRecipe


def describe_finetuned(
    model: torch.nn.Module, name: str, model_name: str, dataset_name: str, results: dict[str, Any]
) -> None:
    """Make the configs describe the fine-tuned classifier; what it was fine-tuned from is kept as its ``origin``.

    Without this the saved ``config.json`` would carry the pre-trained weights' tag and description (for example
    "pre-trained on CIFAR-10") as if it were that model.
    """
    pcfg = dict(getattr(model, "pretrained_cfg", None) or {})
    scfg = dict(getattr(model, "sslzoo_cfg", None) or {})
    origin = {k: v for k, v in dict(
        name=scfg.get("name") or model_name, requested_as=model_name, tag=pcfg.get("tag"),
        description=pcfg.get("description"), sha256=scfg.get("sha256"), method=scfg.get("method"),
    ).items() if v is not None}
    pcfg.update(
        tag=f"ft_{dataset_name}",
        description=f"Fine-tuned on {dataset_name} ({results['num_classes']} classes: {', '.join(results['classes'])})"
                    f" with the sslzoo {results['protocol']} recipe for {results['epochs']} epochs, from {model_name}.",
    )
    model.pretrained_cfg = model.default_cfg = pcfg
    model.sslzoo_cfg = dict(
        scfg, name=name, origin=origin, finetuned_from=model_name, finetune_protocol=results["protocol"],
        finetune_dataset=dataset_name,
        finetune=dict(dataset=dataset_name, num_classes=results["num_classes"], classes=list(results["classes"]),
                      recipe=results["recipe"], recipe_config=results["recipe_config"], epochs=results["epochs"],
                      best_top1=results["best_top1"], last_top1=results["last_top1"]),
    )


def card_fields(
    *, model_name: str, dataset_name: str, recipe_name: str, recipe: FinetuneRecipe, results: dict[str, Any]
) -> dict[str, Any]:
    """The card of a fine-tuned classifier; ``recipe`` is what ran (a warm-up cut to a short run is recorded cut)."""
    protocol = f"finetune:{recipe_name}"
    cut = results.get("recipe_warmup_epochs", recipe.warmup_epochs)
    note = {"warmup_epochs": f" (the recipe's {cut:g}, cut to fit the {results['epochs']}-epoch run)"} \
        if cut != recipe.warmup_epochs else {}
    rows = "\n".join(f"| {k} | {v}{note.get(k, '')} |" for k, v in recipe.to_dict().items())
    classes = ", ".join(results["classes"])
    body = (
        f"Fine-tuned from `{model_name}` on {dataset_name} ({results['train_images']} training images, "
        f"{results['test_images']} test images) for {results['epochs']} epochs with the `{recipe_name}` recipe at lr "
        f"{results['lr']:.3g}. This folder holds the weights of the last epoch. The papers report the best test "
        f"accuracy over epochs: best {results['best_top1']:.2f} (epoch {results['best_epoch']}), "
        f"last {results['last_top1']:.2f}.\n\nClasses (output index order): {classes}.\n\n"
        f"| recipe field | value |\n|---|---|\n{rows}"
    )
    return {
        "description": f"{model_name} fine-tuned on {dataset_name} (protocol {protocol}).",
        "datasets": [dataset_name],
        "pipeline_tag": "image-classification",  # a classifier with its head, no longer a feature extractor
        "tags": ["fine-tuned"],
        "results": [
            {"dataset": dataset_name, "protocol": protocol, "metric": "top1 (best epoch)", "value": results["best_top1"]},
            {"dataset": dataset_name, "protocol": protocol, "metric": "top1 (last epoch)", "value": results["last_top1"]},
        ],
        "sections": {"Fine-tuning": body},
    }
