"""Full fine-tuning with the papers' timm recipes (protocol ``finetune:<recipe>``, the ``sslzoo finetune`` command).

``recipes`` (the presets and their checks, no torch), ``cli`` (the command's flags, no torch), ``data`` (splits and
transforms), ``loop`` (optimizer, schedule, loss, one epoch, evaluation), ``card`` (what the fine-tuned folder says),
``run`` (:func:`finetune`: build, resume, train, publish). The names below are imported on first use, so that the
command checks its options before torch is loaded.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> the module of this package that defines it
_EXPORTS = {
    "finetune": ".run",
    "CHECKPOINT_NAME": ".run",
    "LOG_NAME": ".run",
    "RESULTS_NAME": ".run",
    "build_optimizer": ".loop",
    "build_scheduler": ".loop",
    "default_num_workers": ".loop",
    "evaluate": ".loop",
    "warmup_run": ".loop",
    "FINETUNE_RECIPES": ".recipes",
    "FinetuneError": ".recipes",
    "FinetuneRecipe": ".recipes",
    "check_finetune_options": ".recipes",
    "resolve_recipe": ".recipes",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
