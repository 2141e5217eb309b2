"""APS (Asymmetric Patch Sampling) views: sparse patch subsets for view 1, overlap-avoiding subsets for view 2.

METHODS 1.2. Per image, one random permutation of the G x G grid is cut into T chunks of n = floor(G^2 * ratio)
cells (view 1's subset at each of the T steps); view 2's subset at each step favours the cells of its own grid that
view 1's selected patches do not cover, with weights ``free ** gamma``, drawn without replacement.

Deviations from the official code (``visresearch/aps``), each a fix of a known bug:

- **Horizontal flips.** The official overlap test records each crop box before the flip and then ignores the flip,
  so for 75 % of pairs it avoids the wrong columns. :func:`free_fraction` relates the two grids in source-image
  coordinates after mirroring the column index of a flipped view (its column c shows source column G - 1 - c).
  ``ignore_flips=True`` reproduces the official behaviour, for comparison only.
- **Too few free cells.** numpy's ``choice(replace=False, p=...)`` fails when fewer than n cells have non-zero
  weight. :func:`selective_subsets` then takes every non-zero cell and fills the rest uniformly at random from the
  zero-weight cells.

Sampling without replacement with probabilities proportional to the weights (numpy's successive draws) is done with
the Gumbel top-k trick, which has the same law and is vectorised over the batch.

:func:`training.frameworks.tokens.encode_subset` runs the encoder on the chosen patch tokens.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import ViewConfigError
from .crops import ViewGeometry
from .draws import RandomSource, rand_uniform, random_permutations

FREE_EPS = 1e-6  # free fractions below this count as fully covered (official code)


def subset_size(grid: int, ratio: float) -> int:
    """n = floor(grid^2 * ratio), the number of patches each sparse view keeps."""
    return math.floor(grid * grid * ratio)


def sparse_subsets(batch: int, grid: int, ratio: float, steps: int, generator: RandomSource, *,
                   device: torch.device | str | None = None) -> Tensor:
    """View 1's patch subsets for the T steps: chunk t of one random permutation per image.

    Returns:
        LongTensor (batch, steps, n) of flat grid indices (row * grid + col); with ratio * steps = 1 the chunks
        partition the grid.
    """
    n = subset_size(grid, ratio)
    if n < 1 or n * steps > grid * grid:
        raise ViewConfigError(
            f"APS needs 1 <= floor(grid^2 * ratio) and steps * n <= grid^2; got grid={grid}, ratio={ratio}, "
            f"steps={steps} (n={n}). Lower the sampling ratio or the number of steps."
        )
    perm = random_permutations(batch, grid * grid, generator=generator, device=device)
    return perm[:, : n * steps].reshape(batch, steps, n)


def _source_intervals(start: Tensor, length: Tensor, grid: int) -> tuple[Tensor, Tensor]:
    """Source-pixel [lo, hi) of the grid's G strips along one axis of each box: two (B, G) tensors."""
    edges = torch.arange(grid + 1, device=start.device, dtype=start.dtype) / grid
    bounds = start.unsqueeze(1) + length.unsqueeze(1) * edges
    return bounds[:, :-1], bounds[:, 1:]


def _overlap_lengths(a_lo: Tensor, a_hi: Tensor, b_lo: Tensor, b_hi: Tensor) -> Tensor:
    """(B, G_a, G_b) lengths of the intersections of the strips of a and b."""
    lo = torch.maximum(a_lo.unsqueeze(2), b_lo.unsqueeze(1))
    hi = torch.minimum(a_hi.unsqueeze(2), b_hi.unsqueeze(1))
    return (hi - lo).clamp_min(0)


def free_fraction(geom1: ViewGeometry, geom2: ViewGeometry, subset1: Tensor, grid: int, *,
                  ignore_flips: bool = False) -> Tensor:
    """Fraction of each of view 2's cells that view 1's selected patches do not cover, in source coordinates.

    Args:
        geom1, geom2: the two views' crop boxes (top, left, height, width) in source pixels and flip flags.
        subset1: LongTensor (B, n) of view 1's selected flat grid indices (in view 1's own, possibly flipped, layout).
        grid: G, patches per side.
        ignore_flips: relate the grids as if no view were flipped (the official code's bug; for comparison only).

    Returns:
        float (B, G*G) in [0, 1], indexed in view 2's own layout; values below 1e-6 are 0.
    """
    boxes1, boxes2 = geom1.boxes.to(subset1.device).float(), geom2.boxes.to(subset1.device).float()
    batch = subset1.shape[0]
    chosen = torch.zeros(batch, grid * grid, device=subset1.device)
    chosen = chosen.scatter_(1, subset1, 1.0).view(batch, grid, grid)
    flip1 = geom1.flipped.to(subset1.device).view(-1, 1, 1)
    flip2 = geom2.flipped.to(subset1.device).view(-1, 1, 1)
    if ignore_flips:
        flip1, flip2 = torch.zeros_like(flip1), torch.zeros_like(flip2)
    # columns in source order: a flipped view's column c is the source strip G - 1 - c
    chosen = torch.where(flip1, chosen.flip(-1), chosen)

    rows = _overlap_lengths(*_source_intervals(boxes2[:, 0], boxes2[:, 2], grid),
                            *_source_intervals(boxes1[:, 0], boxes1[:, 2], grid))
    cols = _overlap_lengths(*_source_intervals(boxes2[:, 1], boxes2[:, 3], grid),
                            *_source_intervals(boxes1[:, 1], boxes1[:, 3], grid))
    # covered area of view-2 cell (r2, c2) = sum over chosen (r1, c1) of rows[r2, r1] * cols[c2, c1]
    covered = rows @ chosen @ cols.transpose(1, 2)
    covered = torch.where(flip2, covered.flip(-1), covered)
    cell_area = (boxes2[:, 2] * boxes2[:, 3] / (grid * grid)).view(-1, 1, 1)
    free = (1 - covered / cell_area).clamp(0, 1)
    return torch.where(free < FREE_EPS, torch.zeros_like(free), free).view(batch, grid * grid)


def selective_subsets(free: Tensor, n: int, gamma: float, generator: RandomSource) -> Tensor:
    """View 2's subset: n distinct cells drawn without replacement with probabilities proportional to free ** gamma.

    When fewer than n cells have non-zero weight, all of them are taken and the remainder is drawn uniformly from
    the zero-weight cells.

    Returns:
        LongTensor (B, n) of flat grid indices.
    """
    if not 0 < n <= free.shape[1]:
        raise ViewConfigError(f"cannot draw {n} distinct cells from a grid of {free.shape[1]}.")
    weights = free.clamp_min(0) ** gamma
    u = rand_uniform(weights.shape, generator=generator, device=weights.device).clamp(1e-20, 1 - 1e-7)
    gumbel = -torch.log(-torch.log(u))
    # Zero-weight cells rank after every positive one (log-weights are > -50, Gumbel noise lies in about [-5, 17])
    # and among themselves by the noise alone: a uniform draw.
    keys = torch.where(weights > 0, torch.log(weights.clamp_min(1e-30)) + gumbel, gumbel - 1e4)
    return torch.topk(keys, n, dim=1).indices


def sample_pairs(geom1: ViewGeometry, geom2: ViewGeometry, grid: int, *, ratio: float = 0.25, steps: int = 4,
                 gamma: float = 3.0, generator: RandomSource, ignore_flips: bool = False) -> tuple[Tensor, Tensor]:
    """APS's patch subsets of two views for all ``steps``: sparse for view 1, overlap-avoiding for view 2.

    Args:
        geom1, geom2: each view's crop boxes (B, 4) in source pixels and flips (B,), as the crops were cut.
        grid: patches per side of a view (input size / patch size).
        ratio: fraction of the grid each view keeps (n = floor(grid^2 * ratio) patches).
        steps: optimizer steps per image pair (one subset pair each).
        gamma: power on view 2's free fractions.
        generator: a ``torch.Generator`` (or the per-sample draws of ``views.sample_draws``).

    Returns:
        (S1, S2), LongTensors (B, steps, n) of flat grid indices (row * grid + col), ready for a gather of the
        patch tokens (``training.frameworks.tokens.encode_subset``).

    Two views cut from the same box: view 2 never takes a cell view 1 shows at the same step, and with
    ratio * steps = 1 view 1's subsets partition the grid:

    >>> import torch
    >>> from sslzoo.training.views.aps import sample_pairs
    >>> from sslzoo.training.views.crops import ViewGeometry
    >>> same = ViewGeometry(boxes=torch.tensor([[0.0, 0.0, 32.0, 32.0]]), flipped=torch.tensor([False]))
    >>> s1, s2 = sample_pairs(same, same, grid=16, generator=torch.Generator().manual_seed(0))
    >>> s1.shape, s2.shape
    (torch.Size([1, 4, 64]), torch.Size([1, 4, 64]))
    >>> torch.equal(s1.flatten().sort().values, torch.arange(256))
    True
    >>> any(set(s1[0, t].tolist()) & set(s2[0, t].tolist()) for t in range(4))
    False
    """
    batch = geom1.boxes.shape[0]
    s1 = sparse_subsets(batch, grid, ratio, steps, generator, device=geom1.boxes.device)
    n = s1.shape[-1]
    s2 = [selective_subsets(free_fraction(geom1, geom2, s1[:, t], grid, ignore_flips=ignore_flips), n, gamma,
                            generator) for t in range(steps)]
    return s1, torch.stack(s2, dim=1)
