"""PatchMix: mix every image with its m - 1 batch successors, patch by patch, and the soft targets that go with it.

METHODS 2.2. One random permutation of the T patch positions per call (shared by the batch); its first
m * floor(T / m) positions form m groups; group j of mixed image g holds, at the same positions, the patches of image
(g + j) mod B; the leftover positions keep image g's own patches. Mixing stays inside the local batch; the targets
index the all-gathered keys with an offset of rank * B_local.

The targets count shared sources: y_mix puts 1/m on each of the m sources of a mixed image; y_mm puts on mixed key h
the fraction of mixed query g's patches whose source also makes up h, summed over source pairs, which is
(m - |d|) / m^2 for h = g + d (0.25, 0.5, 0.25 for m = 2). When the local batch is smaller than 2m - 1 some offsets
wrap onto the same image and their weights add up; rows still sum to 1.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import ViewConfigError
from .draws import random_permutations


def mix_sources(batch: int, positions: int, m: int, generator: torch.Generator, *,
                device: torch.device | str | None = None) -> Tensor:
    """LongTensor (batch, positions): the local batch index each patch position of each mixed image comes from."""
    if m < 1 or m > positions:
        raise ViewConfigError(f"PatchMix needs 1 <= m <= number of patches ({positions}); got m={m}.")
    perm = random_permutations(1, positions, generator=generator, device=device)[0]
    group = positions // m
    shift = torch.zeros(positions, dtype=torch.long, device=perm.device)
    shift[perm[: m * group]] = torch.arange(m, device=perm.device).repeat_interleave(group)
    own = torch.arange(batch, device=perm.device).unsqueeze(1)
    return (own + shift.unsqueeze(0)) % batch


def patch_mix(images: Tensor, m: int, patch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Mix a batch of (augmented, normalised) images patch-wise.

    Args:
        images: (B, C, H, W) with H and W multiples of ``patch_size``.
        m: mix number (2 in all configs).
        patch_size: mixing patch side, the ViT's patch size.
        generator: draws the position permutation.

    Returns:
        (mixed images (B, C, H, W), sources LongTensor (B, T) with T = (H / s)(W / s) in row-major patch order).

    With m = 2 each mixed image is half its own patches, half its successor's, at the same positions:

    >>> import torch
    >>> from sslzoo.training.views.patchmix import mix_targets, patch_mix
    >>> images = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 3, 32, 32)  # image i is all i
    >>> mixed, sources = patch_mix(images, m=2, patch_size=8, generator=torch.Generator().manual_seed(0))
    >>> mixed.shape, sources.shape
    (torch.Size([4, 3, 32, 32]), torch.Size([4, 16]))
    >>> sorted(set(mixed[3].flatten().tolist()))  # image 3 mixed with image 0 (the batch wraps around)
    [0.0, 3.0]
    >>> (sources == torch.arange(4).unsqueeze(1)).sum(dim=1).tolist()  # 8 of 16 patches are its own
    [8, 8, 8, 8]

    The soft targets of the mixed queries against the keys (:func:`mix_targets`), for ``info_nce``:

    >>> y_mix, y_mm = mix_targets(4, m=2)
    >>> y_mix[0].tolist(), y_mm[0].tolist()
    ([0.5, 0.5, 0.0, 0.0], [0.5, 0.25, 0.0, 0.25])
    """
    batch, channels, height, width = images.shape
    if height % patch_size or width % patch_size:
        raise ViewConfigError(f"image size {height}x{width} is not a multiple of the mixing patch size {patch_size}.")
    gh, gw = height // patch_size, width // patch_size
    sources = mix_sources(batch, gh * gw, m, generator, device=images.device)
    patches = images.view(batch, channels, gh, patch_size, gw, patch_size).permute(0, 2, 4, 1, 3, 5)
    patches = patches.reshape(batch, gh * gw, channels, patch_size, patch_size)
    mixed = patches[sources, torch.arange(gh * gw, device=images.device)]
    mixed = mixed.view(batch, gh, gw, channels, patch_size, patch_size).permute(0, 3, 1, 4, 2, 5)
    return mixed.reshape(batch, channels, height, width), sources


def _smooth(targets: Tensor, smoothing: float) -> Tensor:
    return targets * (1 - smoothing) + smoothing / targets.shape[1]


def _offset_targets(local_batch: int, weights: dict[int, float], rank: int, world_size: int, device) -> Tensor:
    rows = torch.arange(local_batch, device=device)
    targets = torch.zeros(local_batch, local_batch * world_size, device=device)
    for offset, weight in weights.items():
        cols = rank * local_batch + (rows + offset) % local_batch
        targets.index_put_((rows, cols), torch.full((local_batch,), weight, device=device), accumulate=True)
    return targets


def mix_targets(local_batch: int, m: int, *, rank: int = 0, world_size: int = 1, smoothing: float = 0.0,
                device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """Soft targets of the mixed queries against the all-gathered keys, each (B_local, B_local * world_size).

    Returns:
        (y_mix: mixed -> original keys, 1/m on each source; y_mm: mixed -> mixed keys, (m - |d|)/m^2 at offset d),
        label-smoothed as ``(1 - smoothing) * y + smoothing / N``.
    """
    if not 0 <= rank < world_size:
        raise ViewConfigError(f"rank {rank} is outside world size {world_size}.")
    y_mix = _offset_targets(local_batch, {j: 1 / m for j in range(m)}, rank, world_size, device)
    y_mm = _offset_targets(local_batch, {d: (m - abs(d)) / m**2 for d in range(-(m - 1), m)}, rank, world_size, device)
    return _smooth(y_mix, smoothing), _smooth(y_mm, smoothing)
