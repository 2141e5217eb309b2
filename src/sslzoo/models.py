"""``create_model``: every way of naming a model, built by :mod:`sslzoo.vit` and given its weights.

A registry name goes registry -> :func:`sslzoo.vit.build_vit` -> :mod:`sslzoo.weights.registered` (which resolves, verifies and,
for the authors' releases, converts); a hub folder (``local-dir:``, ``hf-hub:``) goes through
:class:`sslzoo.weights.hub_folder.HubFolder`; any other name is timm's. Weights only ever travel down this chain.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

import timm
import torch
from timm.models.vision_transformer import VisionTransformer

from . import registry
from .errors import UnknownModelError, WeightsNotFoundError
from .weights.hub_folder import HubFolder, open_given
from .pretrained_cfg import pretrained_cfg_for
from .timm_compat import adapt_input_channels, apply_overlay, split_kwargs, wrap_features
from .validation import InvalidOptionError
from .vit import build_vit, load_weights, timm_architecture
from .weights.registered import load_registered_weights


def _attach(model: VisionTransformer, pretrained_cfg: dict[str, Any], sslzoo_cfg: dict[str, Any]) -> VisionTransformer:
    model.pretrained_cfg = pretrained_cfg
    model.default_cfg = pretrained_cfg
    model.sslzoo_cfg = sslzoo_cfg
    return model


def _create_registered(
    name: str, pretrained: bool, pretrained_file: Optional[Union[str, Path]], num_classes: Optional[int],
    overlay: Optional[dict[str, Any]], **kwargs: Any
) -> VisionTransformer:
    resolved = registry.resolve(name)
    arch = resolved.architecture
    weights = resolved.weights if pretrained else None
    model_args = dict(arch.model_args, **(weights.model_args if weights else {}), **kwargs)
    model_args["num_classes"] = num_classes or 0
    # the weights first: a missing or damaged file is reported before seconds go into building a large ViT
    loaded = load_registered_weights(resolved, pretrained_file=pretrained_file) if pretrained else None
    model = build_vit(model_args, norm_eps=arch.method.norm_eps, pos_embed=arch.method.pos_embed)
    sha = None
    if loaded is not None:
        sd = adapt_input_channels(loaded.state_dict, model.patch_embed.proj.in_channels)
        load_weights(model, sd, source=str(loaded.path))
        sha = loaded.sha256
    pcfg = pretrained_cfg_for(
        timm_arch=timm_architecture(model_args),
        img_size=int(model_args["img_size"]),
        num_classes=model.num_classes,
        weights=weights if pretrained else None,
        resolution=arch.resolution,
        method=arch.method,
    ).to_dict()
    sslzoo_cfg = dict(
        name=resolved.full_name if pretrained else arch.name,
        architecture=arch.name,
        method=arch.method.name,
        norm_eps=arch.method.norm_eps,
        pos_embed=arch.method.pos_embed,
        sha256=sha,
    )
    return _attach(model, apply_overlay(pcfg, overlay), sslzoo_cfg)


def _create_from_folder(
    folder: HubFolder, pretrained: bool, num_classes: Optional[int], overlay: Optional[dict[str, Any]], **kwargs: Any
) -> VisionTransformer:
    name = folder.name
    model_args = dict(folder.model_args, **kwargs)
    model_args["num_classes"] = folder.num_classes if num_classes is None else num_classes
    model = build_vit(model_args, norm_eps=folder.norm_eps, pos_embed=folder.pos_embed)
    sha = None
    if pretrained:
        sd, sha = folder.load_state_dict()
        load_weights(model, adapt_input_channels(sd, model.patch_embed.proj.in_channels), source=str(folder.weights_path))
    pcfg = apply_overlay(folder.pretrained_cfg, overlay)
    pcfg["num_classes"] = model.num_classes
    pcfg["input_size"] = (3, *model.patch_embed.img_size)
    sslzoo_cfg = dict(folder.sslzoo_cfg, sha256=sha, source=name)
    return _attach(model, pcfg, sslzoo_cfg)


def _create_timm(
    name: str, pretrained: bool, pretrained_file: Optional[Union[str, Path]], num_classes: Optional[int],
    overlay: Optional[dict[str, Any]], **kwargs: Any
) -> torch.nn.Module:
    # a hub folder is checked against its recorded hash before timm reads the file
    if pretrained_file:
        overlay = dict(overlay or {}, file=str(open_given(pretrained_file).path))
    try:
        model = timm.create_model(
            name, pretrained=pretrained, pretrained_cfg_overlay=overlay, num_classes=num_classes or 0, **kwargs
        )
    except (OSError, RuntimeError) as e:  # timm's download path: hub errors are OSErrors, missing tags RuntimeErrors
        if not pretrained:
            raise
        raise WeightsNotFoundError(
            f"timm could not load the weights of '{name}' ({type(e).__name__}: {str(e).splitlines()[0]}). Without"
            " network access, put them in the Hugging Face cache (HF_HOME) or pass pretrained_file=."
        ) from e
    model.sslzoo_cfg = dict(name=name, architecture=name.partition(".")[0], method=None, sha256=None)
    return model


def create_model(
    name: str,
    pretrained: Optional[bool] = None,
    *,
    pretrained_file: Optional[Union[str, Path]] = None,
    num_classes: Optional[int] = None,
    pretrained_cfg_overlay: Optional[dict[str, Any]] = None,
    **kwargs: Any,
) -> VisionTransformer:
    """Create a ViT by name, optionally with pretrained weights.

    Args:
        name: a registry name (``aps_vit_tiny_patch2_32``, with an optional ``.tag``), a short alias (``aps_vit_t``),
            ``local-dir:PATH`` or ``hf-hub:ORG/REPO`` (a hub folder written by :func:`sslzoo.save_pretrained`), or any
            timm model name.
        pretrained: load weights. Defaults to False for names and True for ``local-dir:``/``hf-hub:`` folders,
            which are weights by nature; pass False to get their architecture randomly initialised.
        pretrained_file: a weight file to use instead of resolving one (safetensors, or a state dict pickle read
            with ``weights_only=True``). Implies ``pretrained=True``.
        num_classes: size of a new classifier head; ``None`` keeps the checkpoint's (0, no head, for backbones).
        pretrained_cfg_overlay: keys that replace the model's ``pretrained_cfg`` (``mean``, ``std``, ``crop_pct``,
            ...), as in timm.
        **kwargs: ``VisionTransformer`` arguments, e.g. ``img_size`` (the position embedding is resampled),
            ``drop_path_rate``, ``global_pool`` or ``in_chans`` (pretrained weights are adapted as timm does), and
            timm's ``features_only`` / ``out_indices`` / ``feature_cls`` (:mod:`sslzoo.timm_compat`).

    Returns:
        A timm ``VisionTransformer`` with ``pretrained_cfg`` (timm's preprocessing config) and ``sslzoo_cfg``.

    Raises:
        UnknownModelError: unknown name, with the closest registry names.
        WeightsNotFoundError: no source has the weights; the message says which file to fetch and how to pass it.
        ChecksumError: a resolved weight file does not match its pinned sha256.
        InvalidOptionError: ``pretrained_file`` given with a ``local-dir:``/``hf-hub:`` folder.
    """
    if pretrained_file is not None:
        pretrained = True
    kwargs, features = split_kwargs(dict(kwargs))
    overlay = pretrained_cfg_overlay
    source, _, _ = name.partition(":")
    if source in ("local-dir", "hf-hub"):
        if pretrained_file is not None:
            raise InvalidOptionError(
                f"'{name}' is a hub folder with weights of its own, so pretrained_file= ({pretrained_file}) cannot"
                " apply to it. Load the folder alone, or give the file with the architecture's registry name."
            )
        pretrained = True if pretrained is None else pretrained
        folder = HubFolder.open(name)
        if folder.is_plain_timm:  # a timm repository (architecture + pretrained_cfg): timm builds and loads it
            cfg = apply_overlay(folder.pretrained_cfg, overlay)
            cfg.pop("architecture", None)
            model = _create_timm(folder.config["architecture"], pretrained,
                                 folder.fetch_weights() if pretrained else None,
                                 folder.num_classes if num_classes is None else num_classes, cfg, **kwargs, **features)
            model.sslzoo_cfg = dict(model.sslzoo_cfg, source=name)
            return model
        return wrap_features(_create_from_folder(folder, pretrained, num_classes, overlay, **kwargs), features)
    pretrained = bool(pretrained)
    if registry.is_registered(name):
        model = _create_registered(name, pretrained, pretrained_file, num_classes, overlay, **kwargs)
        return wrap_features(model, features)
    if timm.is_model(name.partition(".")[0]):
        return _create_timm(name, pretrained, pretrained_file, num_classes, overlay, **kwargs, **features)
    registry.resolve(name)  # raises UnknownModelError with suggestions
    raise UnknownModelError(f"Unknown model '{name}'.")  # pragma: no cover - resolve() always raises here

