"""ContrastiveCrop: boxes from heat maps, Beta-distributed crop centres inside them, a box bank that survives resumes."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from test_augment import ks_statistic  # tests/training is on sys.path (rootdir-relative test modules)
from training.frameworks import ccrop_heatmaps as heatmaps
from training.views import contrastive_crop as cc
from training.errors import ViewConfigError
from training.views.pipeline import ViewPipeline
from training.views.presets import ccrop_cifar

SETTINGS = settings(max_examples=20, deadline=None)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@SETTINGS
@given(r0=st.integers(0, 15), c0=st.integers(0, 15), dr=st.integers(0, 15), dc=st.integers(0, 15),
       background=st.floats(0.0, 0.2), seed=st.integers(0, 2**16))
def test_a_bright_rectangle_gives_its_own_box(r0, c0, dr, dc, background, seed):
    r1, c1 = min(r0 + dr, 15), min(c0 + dc, 15)
    heat = background * torch.rand(2, 16, 16, generator=_gen(seed))
    heat[:, r0:r1 + 1, c0:c1 + 1] = 1.0
    box = cc.heatmap_boxes(heat + 3.0, threshold=0.5, out_size=32)  # an offset must not matter (min-max)
    expected = torch.tensor([r0 * 2, c0 * 2, r1 * 2 + 1, c1 * 2 + 1]) / 32  # cell k covers pixels 2k, 2k + 1
    torch.testing.assert_close(box, expected.expand(2, 4), atol=1.01 / 32, rtol=0)


def test_a_flat_heat_map_keeps_the_whole_image():
    box = cc.heatmap_boxes(torch.ones(3, 4, 4), threshold=0.3, out_size=16)
    assert torch.equal(box, torch.tensor([0.0, 0.0, 1.0, 1.0]).expand(3, 4))


def _attention_by_hook(vit, images):
    """The last block's attention probabilities, captured from timm's own unfused path."""
    attn = vit.blocks[-1].attn
    attn.fused_attn = False
    seen = {}
    handle = attn.attn_drop.register_forward_hook(lambda mod, inp, out: seen.setdefault("a", inp[0]))
    with torch.no_grad():
        vit.forward_features(images)
    handle.remove()
    attn.fused_attn = True
    return seen["a"]


def test_vit_heatmaps_read_the_last_block(tiny_vit_factory):
    vit = tiny_vit_factory(depth=2).train()
    images = torch.randn(3, 3, 32, 32, generator=_gen(1))
    maps = {kind: heatmaps.vit_heatmaps(vit, images, kind=kind) for kind in heatmaps.HEATMAP_KINDS}
    assert vit.training, "the model's mode must be restored"
    assert all(m.shape == (3, 8, 8) and not m.requires_grad for m in maps.values())
    vit.eval()
    with torch.no_grad():
        tokens = vit.forward_features(images)[:, 1:]
    torch.testing.assert_close(maps["token_norm"], tokens.norm(dim=-1).view(3, 8, 8), atol=1e-5, rtol=0)
    torch.testing.assert_close(maps["channel_sum"], tokens.sum(dim=-1).view(3, 8, 8), atol=1e-4, rtol=0)
    reference = _attention_by_hook(vit, images)[:, :, 0, 1:].mean(1).view(3, 8, 8)
    torch.testing.assert_close(maps["cls_attention"], reference, atol=1e-6, rtol=0)
    with pytest.raises(ViewConfigError, match="heat-map kind"):
        heatmaps.vit_heatmaps(vit, images, kind="grad_cam")


@SETTINGS
@given(side=st.integers(8, 64), seed=st.integers(0, 2**16), alpha=st.sampled_from([0.1, 0.6, 2.0]))
def test_crops_stay_in_the_image_and_centre_inside_the_box(side, seed, alpha):
    g = _gen(seed)
    corner = torch.rand(32, 2, generator=g) * 0.7
    boxes = torch.cat([corner, corner + 0.05 + torch.rand(32, 2, generator=g) * 0.25], dim=1)
    crops = cc.center_suppressed_boxes(boxes, side, side, alpha=alpha, generator=g)
    top, left, h, w = crops.unbind(1)
    assert bool(((top >= 0) & (left >= 0) & (top + h <= side) & (left + w <= side) & (h >= 1) & (w >= 1)).all())
    # unless the image edge pushes it back, the centre lies between the box edges
    for start, extent, lo, hi in ((top, h, boxes[:, 0], boxes[:, 2]), (left, w, boxes[:, 1], boxes[:, 3])):
        centre = start + torch.floor(extent / 2)
        free = (torch.floor(side * lo) - torch.floor(extent / 2) >= 0) & (torch.floor(side * hi) + extent <= side)
        inside = (centre >= torch.floor(side * lo)) & (centre <= torch.floor(side * hi))
        assert bool(inside[free].all())


@pytest.mark.parametrize("alpha", [0.1, 0.6])
def test_crop_centres_follow_beta_inside_the_box(alpha):
    n, side = 4000, 2000
    box = torch.tensor([0.2, 0.3, 0.7, 0.9]).expand(n, 4)
    crops = cc.center_suppressed_boxes(box, side, side, scale=(0.0001, 0.0002), alpha=alpha, generator=_gen(2))
    torch.manual_seed(0)
    reference = torch.distributions.Beta(alpha, alpha).sample((50000,))
    for axis, (lo, hi) in enumerate(((0.2, 0.7), (0.3, 0.9))):
        span = round(side * (hi - lo))  # pixel positions a centre can take
        centre = crops[:, axis] + torch.floor(crops[:, axis + 2] / 2)
        u = (centre - round(side * lo)) / span
        on_pixels = torch.floor(reference * span) / span  # the same rounding down to a pixel
        assert ks_statistic(u, on_pixels) < 0.035  # two-sample KS, about the 0.1 % level at n = 4000
        assert ks_statistic(u, torch.floor(torch.rand(50000) * span) / span) > 0.05  # and not uniform


def test_beta_sampler_matches_torch_distributions():
    def on_grid(u):  # draws within 1e-7 of 0 or 1 round differently in the two samplers; compare on a 1e-6 grid
        return torch.floor(u.double() * 1e6).clamp(max=1e6 - 1)

    for alpha in (0.1, 0.6, 3.0):
        ours = cc.sample_beta((20000,), alpha, generator=_gen(3))
        torch.manual_seed(1)
        reference = torch.distributions.Beta(alpha, alpha).sample((20000,))
        assert ks_statistic(on_grid(ours), on_grid(reference)) < 0.02, alpha
        assert torch.equal(ours, cc.sample_beta((20000,), alpha, generator=_gen(3)))
    assert ks_statistic(on_grid(cc.sample_beta((20000,), 0.5, generator=_gen(3))), on_grid(reference)) > 0.05


def test_boxes_plug_into_the_view_pipeline():
    images = torch.rand(4, 3, 32, 32, generator=_gen(4))
    crops = cc.center_suppressed_boxes(torch.tensor([[0.25, 0.25, 0.75, 0.75]]).expand(4, 4), 32, 32,
                                       generator=_gen(5))
    views, geom = ViewPipeline(ccrop_cifar())(images, _gen(6), boxes=crops)
    assert views.shape == (4, 3, 32, 32) and torch.equal(geom.boxes, crops)


def test_box_bank_updates_and_survives_a_checkpoint():
    bank = cc.BoxBank(10)
    assert torch.equal(bank[torch.arange(10)], torch.tensor([0.0, 0.0, 1.0, 1.0]).expand(10, 4))
    new = torch.tensor([[0.1, 0.2, 0.5, 0.6], [0.3, 0.3, 0.9, 0.8]])
    bank.update(torch.tensor([7, 2]), new)
    assert torch.equal(bank[torch.tensor([2, 7, 0])], torch.cat([new[1:], new[:1], torch.tensor([[0.0, 0, 1, 1]])]))
    restored = cc.BoxBank(10)
    restored.load_state_dict(bank.state_dict())
    assert torch.equal(restored[torch.arange(10)], bank[torch.arange(10)])
    with pytest.raises(ViewConfigError, match="same training set"):
        cc.BoxBank(11).load_state_dict(bank.state_dict())


def test_box_update_schedule():
    small = [e for e in range(1, 501) if cc.should_update_boxes(e, warmup=100, interval=100, total=500)]
    imagenet = [e for e in range(1, 101) if cc.should_update_boxes(e, warmup=20, interval=20, total=100)]
    assert small == [100, 200, 300, 400] and imagenet == [20, 40, 60, 80]
    assert not cc.uses_boxes(100, 100) and cc.uses_boxes(101, 100)
