"""The raw-pixel reference of the dense protocols: each patch's normalised pixel values as its feature.

It answers "what do the patch tokens add over the pixels under them?": the same protocols, the same patch grid and the
same normalisation as the model it is compared with, and ``3 p^2`` features per patch (192 for 8 px patches).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class RawPixelPatches(torch.nn.Module):
    """A feature extractor with a ViT's patch interface whose patch features are the patch's pixels, flattened."""

    def __init__(self, patch_size: int, img_size: int, mean, std, interpolation: str = "bicubic") -> None:
        super().__init__()
        self.register_buffer("patch", torch.tensor(patch_size))  # part of the weights' hash, so of the cache key
        self.patch_embed = torch.nn.Module()
        self.patch_embed.patch_size = (patch_size, patch_size)
        self.patch_embed.img_size = (img_size, img_size)
        self.blocks = torch.nn.ModuleList([torch.nn.Identity()])  # one "layer": --layers above 1 is refused
        self.pretrained_cfg = dict(input_size=(3, img_size, img_size), mean=tuple(mean), std=tuple(std),
                                   interpolation=interpolation, crop_pct=1.0)
        self.sslzoo_cfg = {"name": f"raw pixels ({3 * patch_size**2}-d patches)"}

    def forward_intermediates(self, x: torch.Tensor, indices: int = 1, output_fmt: str = "NCHW",
                              **_) -> list[torch.Tensor]:
        """timm's interface: ``(B, L, 3 p^2)`` for ``output_fmt="NLC"``, else ``(B, 3 p^2, h, w)``."""
        p = int(self.patch)
        b, _, height, width = x.shape
        patches = F.unfold(x, p, stride=p)  # (B, 3 p^2, L)
        if output_fmt == "NLC":
            return [patches.transpose(1, 2)]
        return [patches.view(b, 3 * p * p, height // p, width // p)]


def raw_pixels_like(model: torch.nn.Module) -> RawPixelPatches:
    """Raw-pixel patches on ``model``'s patch grid, input size and normalisation."""
    from timm.data import resolve_model_data_config

    cfg = resolve_model_data_config(model)
    p = model.patch_embed.patch_size
    return RawPixelPatches(p if isinstance(p, int) else p[0], model.patch_embed.img_size[0], cfg["mean"], cfg["std"],
                           cfg.get("interpolation") or "bicubic")
