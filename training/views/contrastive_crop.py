"""ContrastiveCrop for ViTs: heat-map boxes per training image and center-suppressed crops inside them.

METHODS 3.1-3.2 and the ViT port of 3.7. Every training image keeps a normalised box (h_min, w_min, h_max, w_max),
initially the whole image, in a :class:`BoxBank`. After the warm-up and then every ``interval`` epochs the boxes are
recomputed from the encoder's heat maps (``training.frameworks.ccrop_heatmaps.vit_heatmaps`` -> :func:`heatmap_boxes`). Crops are then drawn with
RandomResizedCrop's size law and a Beta(alpha, alpha) position of their centre inside the box
(:func:`center_suppressed_boxes`) and handed to ``ViewPipeline(..., boxes=...)``.

Choices where the paper's ResNet recipe has no ViT counterpart (METHODS 3.7, not official):

- The heat map is the ViT's (``training.frameworks.ccrop_heatmaps``: the last block's patch-token norms by default).
  ViT maps are flatter than ResNet ones; use a threshold of about 0.3-0.5 rather than 0.1.
- A constant heat map (no pixel above the threshold after min-max normalisation) gives the whole image (0, 0, 1, 1)
  instead of the official code's division by zero.
- u is kept below 1: at alpha = 0.1 about 1 % of Beta draws round to exactly 1.0, which would put the crop one
  pixel past the range [lo, hi) that the continuous law covers.

Beta(alpha, alpha) draws come from two Gamma(alpha) draws (Marsaglia-Tsang, with the alpha + 1 boost, in log space so
that alpha = 0.1 does not underflow) because ``torch.distributions.Beta`` cannot take a generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from ..errors import ViewConfigError
from .crops import sample_crop_boxes
from .draws import RandomSource, rand_normal, rand_uniform

def heatmap_boxes(heatmaps: Tensor, *, threshold: float, out_size: int | tuple[int, int]) -> Tensor:
    """Normalised boxes (B, 4) as (h_min, w_min, h_max, w_max) of the region where the heat map exceeds ``threshold``.

    Min-max normalise each map, bilinearly upsample it to ``out_size``, keep the rows and columns whose maximum
    exceeds the threshold, and divide their first and last index by the side (so the whole image is
    (0, 0, (H-1)/H, (W-1)/W), as in the official code).
    """
    out_h, out_w = (out_size, out_size) if isinstance(out_size, int) else out_size
    flat = heatmaps.flatten(1).float()
    flat = flat - flat.min(dim=1, keepdim=True).values
    top = flat.max(dim=1, keepdim=True).values
    flat = flat / torch.where(top > 0, top, torch.ones_like(top))
    maps = F.interpolate(flat.view(-1, 1, *heatmaps.shape[1:]), size=(out_h, out_w), mode="bilinear",
                         align_corners=False).squeeze(1)
    rows = maps.amax(dim=2) > threshold
    cols = maps.amax(dim=1) > threshold
    found = rows.any(dim=1)

    def first_last(mask: Tensor) -> tuple[Tensor, Tensor]:
        length = mask.shape[1]
        first = torch.argmax(mask.to(torch.uint8), dim=1)
        last = length - 1 - torch.argmax(mask.flip(1).to(torch.uint8), dim=1)
        return first.float() / length, last.float() / length

    h_min, h_max = first_last(rows)
    w_min, w_max = first_last(cols)
    boxes = torch.stack([h_min, w_min, h_max, w_max], dim=1)
    whole = torch.tensor([0.0, 0.0, 1.0, 1.0], device=boxes.device).expand_as(boxes)
    return torch.where(found.unsqueeze(1), boxes, whole)


def _log_gamma(shape: tuple[int, ...], alpha: float, generator: RandomSource) -> Tensor:
    """log of Gamma(alpha, 1) draws (float64): Marsaglia-Tsang on alpha + 1, then times U^(1/alpha).

    The boost U is drawn before the rejection loop, so that with per-sample draws a sample's numbers do not depend
    on how many rounds the other samples of its batch needed.
    """
    d = alpha + 1 - 1 / 3
    c = 1 / math.sqrt(9 * d)
    boost = rand_uniform(shape, generator=generator).double()
    out = torch.empty(shape, dtype=torch.float64, device=generator.device)
    done = torch.zeros(shape, dtype=torch.bool, device=generator.device)
    while not bool(done.all()):
        x = rand_normal(shape, generator=generator)
        u = rand_uniform(shape, generator=generator).double()
        v = (1 + c * x) ** 3
        log_v = torch.log(v.clamp_min(1e-300))
        accept = (v > 0) & (torch.log(u) < 0.5 * x * x + d - d * v + d * log_v) & ~done
        out = torch.where(accept, math.log(d) + log_v, out)
        done |= accept
    return out + torch.log(boost.clamp_min(1e-300)) / alpha


def sample_beta(shape: tuple[int, ...], alpha: float, *, generator: RandomSource) -> Tensor:
    """Symmetric Beta(alpha, alpha) draws (float64, on the generator's device; 1.0 is possible by rounding)."""
    if alpha <= 0:
        raise ViewConfigError(f"the Beta parameter alpha must be positive, got {alpha}.")
    return torch.sigmoid(_log_gamma(shape, alpha, generator) - _log_gamma(shape, alpha, generator))


def center_suppressed_boxes(
    norm_boxes: Tensor, height: int, width: int, *, scale: tuple[float, float] = (0.2, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3), alpha: float = 0.6, generator: RandomSource,
) -> Tensor:
    """Crop boxes (B, 4) as (top, left, height, width) in pixels whose centres fall inside ``norm_boxes``.

    Sizes follow RandomResizedCrop relative to the whole image; the top (left) coordinate is
    lo + floor((hi - lo) * u), u ~ Beta(alpha, alpha), with lo/hi the box's top/bottom edge in pixels minus half the
    crop, both clipped so that the crop stays inside the image (METHODS 3.2).
    """
    batch = norm_boxes.shape[0]
    device = norm_boxes.device
    sizes = sample_crop_boxes(batch, height, width, scale=scale, ratio=ratio, generator=generator, device=device)
    h, w = sizes[:, 2], sizes[:, 3]
    # u < 1 almost surely, but at alpha = 0.1 about 1 % of draws round to 1.0 even in float64; keep the last
    # position hi - 1 as the bottom of the range, as the continuous law does
    u = sample_beta((batch, 2), alpha, generator=generator).to(device).clamp(max=1 - 1e-9)
    nb, h, w = norm_boxes.float(), h.double(), w.double()

    def position(lo_edge: Tensor, hi_edge: Tensor, side: int, extent: Tensor, draw: Tensor) -> Tensor:
        half = torch.floor(extent / 2)
        # box edges in pixels computed in float32, like the official code (0.7 * 2000 is 1400 there, 1399 in float64)
        lo = torch.minimum((torch.floor(side * lo_edge).double() - half).clamp_min(0), side - extent)
        hi = torch.minimum((torch.floor(side * hi_edge).double() - half).clamp_min(0), side - extent)
        return lo + torch.floor((hi - lo) * draw)

    top = position(nb[:, 0], nb[:, 2], height, h, u[:, 0])
    left = position(nb[:, 1], nb[:, 3], width, w, u[:, 1])
    return torch.stack([top, left, h, w], dim=1).float()


class BoxBank:
    """One normalised box (h_min, w_min, h_max, w_max) per training image, initialised to the whole image.

    The boxes live in CPU shared memory and are only ever updated in place, so DataLoader workers (forked or
    spawned, persistent or not) read the current boxes without a copy per epoch.

    ContrastiveCrop in another loop: every few epochs, heat maps of the model give each image's object box
    (:func:`heatmap_boxes`); the crops are then drawn with their centres inside it (:func:`center_suppressed_boxes`):

    >>> import torch
    >>> from sslzoo.training.views.contrastive_crop import BoxBank, center_suppressed_boxes, heatmap_boxes
    >>> bank = BoxBank(10)                                  # 10 training images, whole-image boxes at first
    >>> heat = torch.zeros(2, 4, 4)
    >>> heat[:, :2, :2] = 1.0                               # images 3 and 7: the object is the top-left quarter
    >>> bank.update(torch.tensor([3, 7]), heatmap_boxes(heat, threshold=0.1, out_size=32))
    >>> bank[torch.tensor([0, 3])].tolist()  # the map is upsampled bilinearly: the box ends a little past 0.5
    [[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.5625, 0.5625]]
    >>> boxes = center_suppressed_boxes(bank[torch.tensor([3, 7])], 224, 224, generator=torch.Generator().manual_seed(0))
    >>> centre_y, centre_x = boxes[:, 0] + boxes[:, 2] / 2, boxes[:, 1] + boxes[:, 3] / 2
    >>> bool((centre_y <= 0.5625 * 224 + 1).all() and (centre_x <= 0.5625 * 224 + 1).all())  # inside the box
    True
    """

    def __init__(self, size: int) -> None:
        self.boxes = torch.tensor([0.0, 0.0, 1.0, 1.0]).repeat(size, 1).share_memory_()

    def __len__(self) -> int:
        return self.boxes.shape[0]

    def __getitem__(self, indices: Tensor) -> Tensor:
        """Boxes (len(indices), 4) of dataset ``indices``, on the indices' device."""
        return self.boxes[indices.cpu()].to(indices.device)

    def update(self, indices: Tensor, boxes: Tensor) -> None:
        """Replace the boxes of dataset ``indices``."""
        self.boxes[indices.cpu()] = boxes.to(self.boxes)

    def state_dict(self) -> dict[str, Tensor]:
        return {"boxes": self.boxes.clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        boxes = state["boxes"]
        if boxes.shape != self.boxes.shape:
            raise ViewConfigError(
                f"the checkpoint holds {tuple(boxes.shape)} ContrastiveCrop boxes but this dataset needs "
                f"{tuple(self.boxes.shape)}; resume with the same training set."
            )
        self.boxes.copy_(boxes)


@dataclass
class BoxGuide:
    """The crops of the main views after the warm-up: centre-suppressed boxes inside each image's bank box."""

    bank: BoxBank
    warmup_epochs: int
    scale: tuple[float, float]
    alpha: float

    def boxes(self, indices: Tensor, epoch: int, height: int, width: int, generator: RandomSource) -> Tensor | None:
        """Pixel boxes (B, 4) for the images ``indices`` in (0-based) ``epoch``; None during the warm-up."""
        if not uses_boxes(epoch + 1, self.warmup_epochs):
            return None
        return center_suppressed_boxes(self.bank[indices], height, width, scale=tuple(self.scale), alpha=self.alpha,
                                       generator=generator)


def uses_boxes(epoch: int, warmup: int) -> bool:
    """Whether (1-based) ``epoch`` crops with the boxes: after the ``warmup`` epochs of plain crops."""
    return epoch >= warmup + 1


def should_update_boxes(epoch: int, warmup: int, interval: int, total: int) -> bool:
    """Whether to recompute the boxes at the end of (1-based) ``epoch`` (METHODS 3.1 step 3).

    At the end of every epoch e >= warmup with e divisible by ``interval``, except the last one.
    """
    return epoch >= warmup and epoch % interval == 0 and epoch != total
