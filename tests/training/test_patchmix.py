"""PatchMix: each mixed image takes 1/m of its patches from each partner, and the soft targets say so."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from training.errors import ViewConfigError
from training.views.patchmix import mix_targets, patch_mix

SETTINGS = settings(max_examples=25, deadline=None)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def pixel_sources(images: torch.Tensor, mixed: torch.Tensor, patch: int) -> torch.Tensor:
    """Which image each patch of each mixed image came from, found by comparing pixels: LongTensor (B, T)."""
    b, c, h, w = images.shape

    def cut(x):
        return x.view(b, c, h // patch, patch, w // patch, patch).permute(0, 2, 4, 1, 3, 5).reshape(b, -1, c * patch**2)

    originals, mixes = cut(images), cut(mixed)
    equal = (mixes.unsqueeze(1) == originals.unsqueeze(0)).all(-1)  # (B mixed, B original, T)
    assert bool((equal.sum(1) == 1).all()), "every mixed patch must be exactly one original patch"
    return equal.float().argmax(1)


@SETTINGS
@given(batch=st.integers(3, 9), m=st.integers(1, 3), grid=st.integers(2, 5), patch=st.integers(1, 3),
       seed=st.integers(0, 2**16))
def test_each_mixed_image_takes_one_mth_of_its_patches_from_each_partner(batch, m, grid, patch, seed):
    images = torch.rand(batch, 3, grid * patch, grid * patch, generator=_gen(seed))
    mixed, sources = patch_mix(images, m, patch, _gen(seed + 1))
    found = pixel_sources(images, mixed, patch)
    assert torch.equal(found, sources)
    positions, share = grid * grid, grid * grid // m
    for g in range(batch):
        counts = torch.bincount(found[g], minlength=batch)
        partners = [(g + j) % batch for j in range(m)]
        for j, partner in enumerate(partners):
            if j:  # partner j is distinct from g when m <= batch
                assert counts[partner] == share
        assert counts[g] == positions - (m - 1) * share  # its own group plus the leftovers
        assert counts.sum() == positions and counts[[i for i in range(batch) if i not in partners]].sum() == 0


def test_one_partition_is_shared_by_the_batch_and_redrawn_per_call():
    images = torch.rand(6, 3, 8, 8, generator=_gen(0))
    g = _gen(1)
    _, first = patch_mix(images, 2, 2, g)
    _, second = patch_mix(images, 2, 2, g)
    shift = (first - torch.arange(6).unsqueeze(1)) % 6  # the group of each position, per image
    assert bool((shift == shift[0]).all())
    assert not torch.equal(first, second)


def test_patch_mix_rejects_sizes_that_do_not_tile():
    with pytest.raises(ViewConfigError, match="multiple"):
        patch_mix(torch.zeros(2, 3, 10, 10), 2, 4, _gen(0))


@SETTINGS
@given(batch=st.integers(1, 8), m=st.integers(1, 4), world=st.integers(1, 3), data=st.data(),
       smoothing=st.sampled_from([0.0, 0.1]))
def test_target_rows_sum_to_one_and_stay_in_the_rank_block(batch, m, world, data, smoothing):
    rank = data.draw(st.integers(0, world - 1))
    for y in mix_targets(batch, m, rank=rank, world_size=world, smoothing=smoothing):
        assert y.shape == (batch, batch * world)
        torch.testing.assert_close(y.sum(1), torch.ones(batch))
        outside = torch.cat([y[:, : rank * batch], y[:, (rank + 1) * batch:]], dim=1)
        torch.testing.assert_close(outside, torch.full_like(outside, smoothing / (batch * world)))


def test_mixed_to_mixed_weights_for_m2_are_quarter_half_quarter():
    batch, rank = 6, 1
    _, y_mm = mix_targets(batch, 2, rank=rank, world_size=3)
    for g in range(batch):
        row = y_mm[g, rank * batch:(rank + 1) * batch]
        expected = torch.zeros(batch)
        expected[(g - 1) % batch], expected[g], expected[(g + 1) % batch] = 0.25, 0.5, 0.25
        torch.testing.assert_close(row, expected)


@pytest.mark.parametrize("m", [2, 3])
def test_targets_agree_with_the_operator(m):
    """y_mix is the share of patches from each image; y_mm the share of source pairs two mixed images have in common."""
    batch, grid = 7, 6  # 36 positions, divisible by 2 and 3
    images = torch.rand(batch, 3, grid, grid, generator=_gen(2))
    _, sources = patch_mix(images, m, 1, _gen(3))
    share = torch.stack([torch.bincount(row, minlength=batch) for row in sources]).float() / grid**2
    y_mix, y_mm = mix_targets(batch, m)
    torch.testing.assert_close(y_mix, share)
    torch.testing.assert_close(y_mm, share @ share.T)  # common sources / m^2
