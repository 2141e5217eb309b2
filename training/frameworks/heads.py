"""Projection and prediction heads: the MoCo-v3-family MLPs and the DINO head.

MoCo-family MLP (:class:`MLPHead`): ``layers`` Linear layers without bias; BatchNorm1d + ReLU after every hidden
layer; optionally an affine-free BatchNorm1d after the output. PyTorch's default Linear init, as the official heads
(MoCo v3, APS, PatchMix all build their heads after the backbone init). Per method (METHODS 1.3, 2.5; MoCo v3):

===========  ======================  =======================================
method       projector               predictor
===========  ======================  =======================================
MoCo v3      3 layers 4096 -> 256,   2 layers 4096 -> 256, no final BN
             final BN(affine=False)
APS          3 layers 512 -> 128,    3 layers 512 -> 128, final BN
             final BN
PatchMix     3 layers 4096 -> 256,   2 layers 4096 -> 256, final BN
             final BN
===========  ======================  =======================================

DINO head (:class:`DINOHead`): MLP D -> hidden -> hidden -> bottleneck with GELU, and BatchNorm1d before every GELU
only with ``use_bn`` (official DINO's ``--use_bn_in_head``, off by default), trunc-normal(0.02) init with zero
bias, L2 normalisation, then a weight-normalised Linear bottleneck -> out_dim without bias whose norm g is 1 (and
frozen when ``norm_last_layer``), as in the official DINO code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.layers import trunc_normal_
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils import parametrizations

from ..errors import MethodConfigError


@dataclass
class MLPSpec:
    """Shape of a MoCo-family MLP: ``layers`` Linear layers, hidden width, output width, final affine-free BN."""

    hidden: int
    out: int
    layers: int = 3
    last_bn: bool = True


class MLPHead(nn.Sequential):
    """Linear(no bias) [BN ReLU Linear(no bias)]* [BN(affine=False)]."""

    def __init__(self, in_dim: int, spec: MLPSpec) -> None:
        if spec.layers < 1:
            raise MethodConfigError(f"an MLP head needs at least one layer, got {spec.layers}.")
        mods: list[nn.Module] = []
        dims = [in_dim] + [spec.hidden] * (spec.layers - 1) + [spec.out]
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            mods.append(nn.Linear(a, b, bias=False))
            if i < spec.layers - 1:
                mods += [nn.BatchNorm1d(b), nn.ReLU(inplace=True)]
        if spec.last_bn:
            mods.append(nn.BatchNorm1d(spec.out, affine=False))
        super().__init__(*mods)


@dataclass
class DINOHeadSpec:
    """DINO head: ``out_dim`` prototypes (65536 in DINO, 8192 in ADCLR's code), MLP widths, last-layer norm, BN in
    the MLP."""

    out_dim: int = 65536
    hidden: int = 2048
    bottleneck: int = 256
    layers: int = 3
    norm_last_layer: bool = True
    use_bn: bool = False


class DINOHead(nn.Module):
    """MLP -> L2 norm -> weight-normed prototypes (logits before temperature)."""

    def __init__(self, in_dim: int, spec: DINOHeadSpec) -> None:
        super().__init__()
        dims = [in_dim] + [spec.hidden] * (spec.layers - 1) + [spec.bottleneck]
        mods: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            mods.append(nn.Linear(a, b))
            if i < spec.layers - 1:
                mods += [nn.BatchNorm1d(b), nn.GELU()] if spec.use_bn else [nn.GELU()]
        self.mlp = nn.Sequential(*mods)
        self.apply(self._init)
        last = parametrizations.weight_norm(nn.Linear(spec.bottleneck, spec.out_dim, bias=False))
        with torch.no_grad():
            last.parametrizations.weight.original0.fill_(1.0)
        if spec.norm_last_layer:
            last.parametrizations.weight.original0.requires_grad_(False)
        self.last_layer = last

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        """Logits of features of shape (..., D); with ``use_bn`` every leading position is one BN sample (ADCLR
        passes (B, L, D) query tokens)."""
        lead = x.shape[:-1]
        x = F.normalize(self.mlp(x.reshape(-1, x.shape[-1])), dim=-1, p=2)
        return self.last_layer(x).reshape(*lead, -1)
