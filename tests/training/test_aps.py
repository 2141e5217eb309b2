"""APS views: the sparse subsets partition the grid, view 2 avoids what view 1 shows (flips included), encoder gather."""

from __future__ import annotations

import pytest
import timm
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from training.views import aps
from training.errors import ViewConfigError
from training.frameworks.tokens import encode_subset
from training.views.crops import ViewGeometry, sample_crop_boxes
from training.views.presets import aps_cifar

SETTINGS = settings(max_examples=20, deadline=None)
SOURCE = 32  # CIFAR source side
GRID = 16


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_geometry(batch: int, g: torch.Generator, *, flip: torch.Tensor | None = None) -> ViewGeometry:
    cfg = aps_cifar()
    boxes = sample_crop_boxes(batch, SOURCE, SOURCE, scale=cfg.scale, ratio=cfg.ratio, generator=g)
    flipped = torch.rand(batch, generator=g) < 0.5 if flip is None else flip
    return ViewGeometry(boxes=boxes, flipped=flipped)


def visible_mask(geom: ViewGeometry, subset: torch.Tensor, grid: int, *, supersample: int = 4) -> torch.Tensor:
    """Rasterise, on a fine grid of source-image points, which points a view's selected patches show: (B, S, S)."""
    side = SOURCE * supersample
    centres = (torch.arange(side, dtype=torch.float64) + 0.5) / supersample
    top, left, h, w = (geom.boxes.double()[:, i].view(-1, 1) for i in range(4))
    rows = torch.floor((centres - top) * grid / h).long()  # (B, S) source row -> view row, out of range if outside
    cols = torch.floor((centres - left) * grid / w).long()
    inside_r, inside_c = (rows >= 0) & (rows < grid), (cols >= 0) & (cols < grid)
    cols = torch.where(geom.flipped.view(-1, 1), grid - 1 - cols, cols)  # source column -> the view's own column
    chosen = torch.zeros(subset.shape[0], grid * grid, dtype=torch.bool).scatter_(1, subset, True)
    flat = rows.clamp(0, grid - 1).unsqueeze(2) * grid + cols.clamp(0, grid - 1).unsqueeze(1)
    shown = chosen.gather(1, flat.flatten(1)).view_as(flat)
    return shown & inside_r.unsqueeze(2) & inside_c.unsqueeze(1)


def overlap(geom1, subset1, geom2, subset2, grid: int = GRID) -> torch.Tensor:
    """Per pair: the share of view 2's shown source area that view 1 also shows."""
    a, b = visible_mask(geom1, subset1, grid), visible_mask(geom2, subset2, grid)
    return (a & b).flatten(1).sum(1) / b.flatten(1).sum(1).clamp_min(1)


@SETTINGS
@given(grid=st.integers(2, 16), steps=st.sampled_from([1, 2, 4]), seed=st.integers(0, 2**16))
def test_sparse_subsets_partition_the_grid(grid, steps, seed):
    subsets = aps.sparse_subsets(5, grid, 1 / steps, steps, _gen(seed))
    n = aps.subset_size(grid, 1 / steps)
    assert subsets.shape == (5, steps, n)
    if n * steps == grid * grid:
        expected = torch.arange(grid * grid).expand(5, -1)
        assert torch.equal(subsets.flatten(1).sort(dim=1).values, expected)
    else:  # distinct cells all the same
        assert all(row.unique().numel() == n * steps for row in subsets.flatten(1))


def test_sparse_subsets_refuse_an_impossible_request():
    with pytest.raises(ViewConfigError, match="steps"):
        aps.sparse_subsets(2, 4, 0.5, 4, _gen(0))


def _reference_free(geom1, geom2, subset1, grid):
    """free_fraction written out one rectangle at a time."""
    out = torch.zeros(subset1.shape[0], grid * grid, dtype=torch.float64)
    for b in range(subset1.shape[0]):
        t1, l1, h1, w1 = geom1.boxes[b].double().tolist()
        t2, l2, h2, w2 = geom2.boxes[b].double().tolist()
        for cell in range(grid * grid):
            r2, c2 = divmod(cell, grid)
            c2 = grid - 1 - c2 if geom2.flipped[b] else c2
            y0, x0 = t2 + r2 * h2 / grid, l2 + c2 * w2 / grid
            covered = 0.0
            for index in subset1[b].tolist():
                r1, c1 = divmod(index, grid)
                c1 = grid - 1 - c1 if geom1.flipped[b] else c1
                py0, px0 = t1 + r1 * h1 / grid, l1 + c1 * w1 / grid
                dy = min(y0 + h2 / grid, py0 + h1 / grid) - max(y0, py0)
                dx = min(x0 + w2 / grid, px0 + w1 / grid) - max(x0, px0)
                covered += max(dy, 0) * max(dx, 0)
            out[b, cell] = 1 - covered / (h2 * w2 / grid**2)
    return torch.where(out < 1e-6, torch.zeros_like(out), out)


@SETTINGS
@given(grid=st.integers(2, 5), seed=st.integers(0, 2**16))
def test_free_fraction_matches_rectangle_by_rectangle_reference(grid, seed):
    g = _gen(seed)
    geom1, geom2 = random_geometry(4, g), random_geometry(4, g)
    subset1 = aps.sparse_subsets(4, grid, 0.5, 1, g)[:, 0]
    ours = aps.free_fraction(geom1, geom2, subset1, grid)
    torch.testing.assert_close(ours.double(), _reference_free(geom1, geom2, subset1, grid), atol=1e-4, rtol=0)


def test_free_fraction_of_the_same_view_mirrors_with_the_flip():
    boxes = torch.tensor([[3.0, 5.0, 20.0, 24.0]])
    subset = torch.tensor([[0, 5]])  # cells (0, 0) and (1, 1) of a 4 x 4 grid
    plain = ViewGeometry(boxes=boxes, flipped=torch.tensor([False]))
    mirrored = ViewGeometry(boxes=boxes, flipped=torch.tensor([True]))
    same = aps.free_fraction(plain, plain, subset, 4)
    assert same[0, 0] == 0 and same[0, 5] == 0 and same.sum() == 14
    flipped = aps.free_fraction(plain, mirrored, subset, 4)  # the content of (r, c) sits at (r, 3 - c) in view 2
    assert flipped[0, 3] == 0 and flipped[0, 6] == 0 and flipped.sum() == 14


def _view_pairs(batch: int, seed: int, flips=None):
    g = _gen(seed)
    f1, f2 = flips if flips is not None else (None, None)
    geom1, geom2 = random_geometry(batch, g, flip=f1), random_geometry(batch, g, flip=f2)
    subset1 = aps.sparse_subsets(batch, GRID, 0.25, 4, g)[:, 0]
    return g, geom1, geom2, subset1


def test_view2_avoids_view1_far_more_than_a_uniform_draw():
    g, geom1, geom2, subset1 = _view_pairs(256, 0)
    free = aps.free_fraction(geom1, geom2, subset1, GRID)
    selective = aps.selective_subsets(free, 64, 3.0, g)
    uniform = aps.sparse_subsets(256, GRID, 0.25, 1, g)[:, 0]
    ours = overlap(geom1, subset1, geom2, selective).mean()
    chance = overlap(geom1, subset1, geom2, uniform).mean()
    assert ours < 0.4 * chance, (float(ours), float(chance))  # measured: 0.039 vs 0.163


def test_the_flip_fix_matters_on_pairs_with_one_flipped_view():
    batch = 256
    flips = (torch.zeros(batch, dtype=torch.bool), torch.ones(batch, dtype=torch.bool))
    g, geom1, geom2, subset1 = _view_pairs(batch, 1, flips)
    fixed = aps.selective_subsets(aps.free_fraction(geom1, geom2, subset1, GRID), 64, 3.0, g)
    official = aps.selective_subsets(aps.free_fraction(geom1, geom2, subset1, GRID, ignore_flips=True), 64, 3.0, g)
    ours, theirs = overlap(geom1, subset1, geom2, fixed).mean(), overlap(geom1, subset1, geom2, official).mean()
    assert ours < 0.4 * theirs, (float(ours), float(theirs))  # measured: 0.040 vs 0.147


def test_selective_subsets_are_distinct_and_skip_covered_cells():
    g = _gen(2)
    free = torch.rand(64, 100, generator=g)
    free[:, :30] = 0
    chosen = aps.selective_subsets(free, 40, 3.0, g)
    assert all(row.unique().numel() == 40 for row in chosen)
    assert bool((chosen >= 30).all())


def test_selective_subsets_draw_in_proportion_to_the_weights():
    free = torch.tensor([[0.2, 0.4, 0.6, 0.8, 1.0]]).expand(20000, -1)
    first = aps.selective_subsets(free, 1, 2.0, _gen(3))[:, 0]
    freq = torch.bincount(first, minlength=5).float() / first.numel()
    expected = free[0] ** 2 / (free[0] ** 2).sum()
    torch.testing.assert_close(freq, expected, atol=0.015, rtol=0)


def test_selective_subsets_fill_up_uniformly_when_too_few_cells_are_free():
    g = _gen(4)
    free = torch.zeros(4000, 16)
    free[:, [2, 7, 11]] = torch.tensor([0.3, 0.5, 1.0])
    chosen = aps.selective_subsets(free, 6, 3.0, g)
    assert all(row.unique().numel() == 6 for row in chosen)
    assert bool(torch.isin(torch.tensor([2, 7, 11]), chosen).all()) and all(
        set(row.tolist()) >= {2, 7, 11} for row in chosen[:50]
    )
    counts = torch.bincount(chosen.flatten(), minlength=16).float()
    fill = counts[[i for i in range(16) if i not in (2, 7, 11)]] / chosen.shape[0]
    torch.testing.assert_close(fill, torch.full_like(fill, 3 / 13), atol=0.03, rtol=0)


def _vit(no_embed_class: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", img_size=16, patch_size=2, embed_dim=64, depth=2, num_heads=2,
                             num_classes=0, no_embed_class=no_embed_class).eval()


@pytest.mark.parametrize("no_embed_class", [False, True])
def test_encode_subset_is_the_plain_forward_on_the_full_grid_and_ignores_order(no_embed_class):
    vit = _vit(no_embed_class)
    with torch.no_grad():  # a pos-embed that is not zero, so that a misplaced one shows
        vit.pos_embed.normal_(std=0.5)
    images = torch.randn(3, 3, 16, 16, generator=_gen(5))
    full = torch.arange(64).expand(3, -1)
    with torch.no_grad():
        plain = vit.forward_head(vit.forward_features(images), pre_logits=True)
        torch.testing.assert_close(encode_subset(vit, images, full), plain, atol=1e-5, rtol=0)
        subset = aps.sparse_subsets(3, 8, 0.25, 1, _gen(6))[:, 0]
        reordered = subset.flip(1)
        a, b = encode_subset(vit, images, subset), encode_subset(vit, images, reordered)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
        assert (a - plain).abs().max() > 1e-3
        # a patch keeps its own position: moving the embedding of an unselected cell changes nothing
        unselected = int(torch.tensor([i for i in range(64) if i not in subset[0].tolist()])[0])
        vit.pos_embed[0, unselected + (0 if no_embed_class else 1)] += 5
        torch.testing.assert_close(encode_subset(vit, images, subset)[0], a[0], atol=1e-5, rtol=0)
