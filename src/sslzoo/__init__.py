"""sslzoo: self-supervised Vision Transformers (APS, PatchMix, ContrastiveCrop, ADCLR, MoCo v3, DINO) by name.

The public names are imported on first use (PEP 562), so ``import sslzoo`` and the ``sslzoo`` command start without
loading torch until a model, a weight file or an evaluation is asked for.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import SslzooError
from .timm_registry import install as _register_in_timm

__version__ = "0.1.0"
_register_in_timm()  # sslzoo's names in timm's registry, once timm is imported (sslzoo.timm_registry)

# public name -> the module that defines it
_EXPORTS = {
    "attention_figure": ".attention",
    "attention_maps": ".attention",
    "create_model": ".models",
    "dense_eval": ".eval.dense",
    "evaluate": ".eval.protocol_table",
    "extract_features": ".eval.features",
    "knn_classify": ".eval.knn",
    "linear_probe": ".eval.linear",
    "list_models": ".registry",
    "model_info": ".registry",
    "open_segmentation": ".data.seg_layouts",
    "push_to_hub": ".weights.hub_folder",
    "save_pretrained": ".weights.hub_folder",
}

__all__ = ["SslzooError", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sslzoo' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
