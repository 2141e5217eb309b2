"""What timm's own factory does around a ViT, for sslzoo's models: feature wrappers, other input channel counts with
pretrained weights, and ``pretrained_cfg_overlay``.

``features_only=True`` wraps the built, weight-loaded ViT as timm does (``feature_cls='getter'``:
``FeatureGetterNet`` over ``forward_intermediates``, the ViT default; ``'hook'``: ``FeatureHookNet`` on the blocks of
``feature_info``). ``in_chans`` other than 3 with pretrained weights adapts the patch embedding's convolution with
timm's ``adapt_input_conv`` (summed to one channel, tiled and rescaled for more), as timm's loader does.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

FEATURE_ARGS = ("features_only", "out_indices", "feature_cls", "output_fmt", "feature_cfg")
# factory arguments timm.create_model passes to every entrypoint; they describe timm's own loading, not the ViT
FACTORY_ARGS = ("pretrained_cfg", "cache_dir")


def split_kwargs(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(ViT arguments, feature-wrapper arguments) of a ``create_model`` call; timm's factory-only keys dropped."""
    features = {k: kwargs.pop(k) for k in FEATURE_ARGS if k in kwargs}
    for key in FACTORY_ARGS:
        kwargs.pop(key, None)
    return kwargs, features


def adapt_input_channels(state_dict: dict[str, torch.Tensor], in_chans: int) -> dict[str, torch.Tensor]:
    """``state_dict`` with its patch embedding adapted to ``in_chans`` input channels (timm's rule)."""
    key = "patch_embed.proj.weight"
    if key not in state_dict or state_dict[key].shape[1] == in_chans:
        return state_dict
    from timm.models import adapt_input_conv

    return dict(state_dict, **{key: adapt_input_conv(in_chans, state_dict[key])})


def wrap_features(model: nn.Module, features: dict[str, Any]) -> nn.Module:
    """``model`` as timm's ``features_only`` wrapper, or unchanged when no features were asked for."""
    if not features.pop("features_only", False):
        if features:
            raise TypeError(f"{sorted(features)} only apply with features_only=True")
        return model
    from timm.models._features import FeatureGetterNet, FeatureHookNet

    cfg = dict(features.pop("feature_cfg", None) or {})
    out_indices = features.pop("out_indices", cfg.pop("out_indices", 3))
    kind = features.pop("feature_cls", cfg.pop("feature_cls", "getter"))
    output_fmt = features.pop("output_fmt", cfg.pop("output_fmt", "NCHW"))
    pretrained_cfg, sslzoo_cfg = model.pretrained_cfg, getattr(model, "sslzoo_cfg", None)
    if kind == "getter":
        wrapped = FeatureGetterNet(model, out_indices=out_indices, output_fmt=output_fmt, **cfg)
    elif kind == "hook":
        wrapped = FeatureHookNet(model, out_indices=out_indices, output_fmt=output_fmt, **cfg)
    else:
        raise ValueError(f"feature_cls must be 'getter' or 'hook' for a ViT, got {kind!r}")
    wrapped.pretrained_cfg = wrapped.default_cfg = pretrained_cfg
    wrapped.sslzoo_cfg = sslzoo_cfg
    return wrapped


def apply_overlay(pretrained_cfg: dict[str, Any], overlay: Optional[dict[str, Any]]) -> dict[str, Any]:
    """The model's preprocessing config with ``pretrained_cfg_overlay`` on top (tuples kept as tuples)."""
    out = dict(pretrained_cfg)
    for key, value in (overlay or {}).items():
        out[key] = tuple(value) if isinstance(value, list) else value
    return out
