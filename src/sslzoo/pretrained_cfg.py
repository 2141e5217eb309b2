"""timm's ``PretrainedCfg`` of a registry architecture and its weights, for sslzoo's models and timm's registry.

timm is imported inside the function: :mod:`sslzoo.timm_registry` calls it from the hook that runs when timm's own
import finishes, possibly while an sslzoo module that imports timm at its top is still half-initialised, so this
module imports nothing that imports timm.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from . import registry

if TYPE_CHECKING:
    from timm.models import PretrainedCfg


def pretrained_cfg_for(
    *,
    timm_arch: str,
    img_size: int,
    num_classes: int,
    weights: Optional[registry.Weights],
    resolution: registry.Resolution,
    method: registry.Method,
) -> PretrainedCfg:
    """timm's ``PretrainedCfg`` of a registry architecture and weights: preprocessing, sources, licence, paper."""
    from timm.models import PretrainedCfg

    w = weights
    cfg = PretrainedCfg(
        architecture=timm_arch,
        tag=w.tag if w else None,
        input_size=(3, img_size, img_size),
        fixed_input_size=True,
        interpolation=w.interpolation if w else "bicubic",
        crop_pct=(w.crop_pct if w and w.crop_pct is not None else resolution.crop_pct),
        mean=(w.mean if w and w.mean else resolution.mean),
        std=(w.std if w and w.std else resolution.std),
        num_classes=num_classes,
        first_conv="patch_embed.proj",
        classifier="head",
        hf_hub_id=w.hf_hub_id if w else None,
        hf_hub_filename=w.hf_filename if w else None,
        url=w.url if w else None,
        license=w.licence if w else None,
        description=w.description if w else None,
        origin_url=method.code,
        paper_name=method.title,
        paper_ids=f"arXiv:{method.arxiv}",
    )
    return cfg
