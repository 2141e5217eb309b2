"""Batched augmentations: torchvision's laws and results, image by image, and reproducibility from a generator."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

from training.errors import ViewConfigError
from training.methods import build_method
from training.views import color, presets
from training.views import crops as C
from training.views.pipeline import ViewPipeline, ViewPipelineConfig

SETTINGS = settings(max_examples=15, deadline=None)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def ks_statistic(a: torch.Tensor, b: torch.Tensor) -> float:
    """Two-sample Kolmogorov-Smirnov distance between the empirical CDFs of a and b."""
    a, b = a.double().sort().values, b.double().sort().values
    points = torch.cat([a, b])
    cdf_a = torch.searchsorted(a, points, right=True) / a.numel()
    cdf_b = torch.searchsorted(b, points, right=True) / b.numel()
    return float((cdf_a - cdf_b).abs().max())


def ks_critical(n: int, m: int, *, c: float = 1.95) -> float:
    """The two-sample KS rejection threshold at about the 0.1 % level."""
    return c * math.sqrt((n + m) / (n * m))


@SETTINGS
@given(height=st.integers(8, 48), width=st.integers(8, 48), size=st.integers(4, 40),
       mode=st.sampled_from(["bilinear", "bicubic"]), seed=st.integers(0, 2**16))
def test_resized_crops_match_torchvision_image_by_image(height, width, size, mode, seed):
    g = _gen(seed)
    images = torch.rand(6, 3, height, width, generator=g)
    boxes = C.sample_crop_boxes(6, height, width, scale=(0.05, 1.0), generator=g)
    ours = C.resized_crops(images, boxes, size, interpolation=mode)
    interp = TF.InterpolationMode.BILINEAR if mode == "bilinear" else TF.InterpolationMode.BICUBIC
    ref = torch.stack([
        TF.resized_crop(img, *[int(v) for v in box], size=[size, size], interpolation=interp, antialias=False)
        for img, box in zip(images, boxes)
    ])
    if mode == "bicubic":
        ref = ref.clamp(0, 1)  # PIL's 8-bit law, which the papers' pipelines follow
    torch.testing.assert_close(ours, ref, atol=2e-5, rtol=0)


def test_bicubic_overshoot_is_clamped_so_colour_jitter_stays_finite():
    images = torch.zeros(4, 3, 16, 16)
    images[:, :, :, ::2] = 1.0  # a stripe pattern: bicubic rings well outside [0, 1]
    boxes = torch.tensor([[0.0, 0.0, 16.0, 5.0]]).repeat(4, 1)
    crops = C.resized_crops(images, boxes, 32, interpolation="bicubic")
    assert float(crops.min()) >= 0.0 and float(crops.max()) <= 1.0
    jittered = color.color_jitter(crops, brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1, p=1.0,
                                   generator=_gen(0))
    assert bool(torch.isfinite(jittered).all())


@SETTINGS
@given(height=st.integers(4, 64), width=st.integers(4, 64), lo=st.floats(0.01, 1.0), seed=st.integers(0, 2**16))
def test_crop_boxes_are_integer_and_inside_the_image(height, width, lo, seed):
    boxes = C.sample_crop_boxes(64, height, width, scale=(lo, 1.0), generator=_gen(seed))
    top, left, h, w = boxes.unbind(1)
    assert torch.equal(boxes, boxes.round())
    assert bool(((h >= 1) & (w >= 1) & (top >= 0) & (left >= 0)).all())
    assert bool(((top + h <= height) & (left + w <= width)).all())


def test_crop_boxes_follow_torchvision_law():
    n, height, width, scale = 4000, 40, 60, (0.1, 1.0)
    ours = C.sample_crop_boxes(n, height, width, scale=scale, generator=_gen(0))
    torch.manual_seed(0)
    ref = torch.tensor([T.RandomResizedCrop.get_params(torch.empty(3, height, width), list(scale), [3 / 4, 4 / 3])
                        for _ in range(n)], dtype=torch.float32)
    for column in range(4):  # top, left, height, width
        assert ks_statistic(ours[:, column], ref[:, column]) < ks_critical(n, n)
    # and the law is not trivially matched: a different scale range is rejected
    other = C.sample_crop_boxes(n, height, width, scale=(0.5, 1.0), generator=_gen(1))
    assert ks_statistic(other[:, 2] * other[:, 3], ref[:, 2] * ref[:, 3]) > ks_critical(n, n)


def test_crop_boxes_fall_back_to_the_centre_crop():
    # a 10 x 100 image cannot hold 90 % of its area at an aspect ratio within (3/4, 4/3): centre crop, ratio 4/3
    boxes = C.sample_crop_boxes(5, 10, 100, scale=(0.9, 1.0), generator=_gen(0))
    expected = torch.tensor([0.0, (100 - 13) // 2, 10, 13]).expand(5, 4)
    assert torch.equal(boxes, expected)


def test_colour_ops_match_torchvision_image_by_image():
    g = _gen(3)
    images = torch.rand(8, 3, 12, 10, generator=g)
    factors = 0.3 + 1.4 * torch.rand(8, generator=g)
    shifts = torch.rand(8, generator=g) - 0.5
    pairs = [
        (color.adjust_brightness, TF.adjust_brightness, factors),
        (color.adjust_contrast, TF.adjust_contrast, factors),
        (color.adjust_saturation, TF.adjust_saturation, factors),
        (color.adjust_hue, TF.adjust_hue, shifts),
    ]
    for ours, theirs, values in pairs:
        ref = torch.stack([theirs(img, float(v)) for img, v in zip(images, values)])
        torch.testing.assert_close(ours(images, values), ref, atol=1e-5, rtol=0, msg=ours.__name__)
    gray = color.grayscale(images, p=1.0, generator=g)
    torch.testing.assert_close(gray, TF.rgb_to_grayscale(images, num_output_channels=3), atol=1e-6, rtol=0)


def test_blur_matches_torchvision_image_by_image():
    g = _gen(4)
    images = torch.rand(5, 3, 16, 16, generator=g)
    sigmas = 0.1 + 1.9 * torch.rand(5, generator=g)
    ref = torch.stack([TF.gaussian_blur(img, [5, 5], [float(s), float(s)]) for img, s in zip(images, sigmas)])
    torch.testing.assert_close(color.blur(images, sigmas, 5), ref, atol=1e-5, rtol=0)


def test_solarize_inverts_bright_pixels_only():
    images = torch.rand(4, 3, 8, 8, generator=_gen(5))
    out = color.solarize(images, p=1.0, generator=_gen(0))
    assert torch.equal(out, torch.where(images >= 0.5, 1 - images, images))
    assert torch.equal(color.solarize(images, p=0.0, generator=_gen(0)), images)


def test_jitter_is_applied_with_probability_p():
    images = 0.1 + 0.6 * torch.rand(2000, 3, 2, 2, generator=_gen(6))  # x 1.4 stays below 1: no clamping
    out = color.color_jitter(images, brightness=0.4, contrast=0, saturation=0, hue=0, p=0.3, generator=_gen(1))
    changed = (out - images).flatten(1).abs().amax(1) > 0
    assert abs(changed.float().mean().item() - 0.3) < 0.04
    ratio = (out / images)[changed].flatten(1)
    # brightness only: each changed image is scaled by one factor in [0.6, 1.4]
    torch.testing.assert_close(ratio.amin(1), ratio.amax(1), atol=1e-4, rtol=0)
    assert ratio.min() >= 0.6 - 1e-4 and ratio.max() <= 1.4 + 1e-4


OPS = {
    "jitter": lambda x, g: color.color_jitter(x, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, p=0.8,
                                          generator=g),
    "gray": lambda x, g: color.grayscale(x, p=0.5, generator=g),
    "blur": lambda x, g: color.gaussian_blur(x, p=0.5, generator=g),
    "solarize": lambda x, g: color.solarize(x, p=0.5, generator=g),
    "pipeline": lambda x, g: ViewPipeline(presets.patchmix_cifar(2))(x, g)[0],
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_ops_are_deterministic_for_a_fixed_generator(name):
    images = torch.rand(16, 3, 32, 32, generator=_gen(7))
    first, again, other = (OPS[name](images, _gen(seed)) for seed in (11, 11, 12))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_pipeline_uses_given_boxes_and_reports_flips():
    images = torch.rand(32, 3, 24, 24, generator=_gen(8))
    cfg = ViewPipelineConfig(size=16, flip_p=0.5, jitter_p=0.0, gray_p=0.0, mean=(0, 0, 0), std=(1, 1, 1))
    boxes = C.sample_crop_boxes(32, 24, 24, scale=(0.2, 1.0), generator=_gen(9))
    views, geom = ViewPipeline(cfg)(images, _gen(10), boxes=boxes)
    crops = C.resized_crops(images, boxes, 16)
    assert torch.equal(geom.boxes, boxes)
    assert 0 < int(geom.flipped.sum()) < 32
    expected = torch.where(geom.flipped.view(-1, 1, 1, 1), crops.flip(-1), crops)
    torch.testing.assert_close(views, expected)


def test_pipeline_normalises():
    cfg = ViewPipelineConfig(size=8, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0, jitter_p=0, gray_p=0)
    images = torch.full((2, 3, 8, 8), 0.5)
    views, _ = ViewPipeline(cfg)(images, _gen(0))
    expected = (0.5 - torch.tensor(cfg.mean)) / torch.tensor(cfg.std)
    torch.testing.assert_close(views[:, :, 0, 0], expected.expand(2, 3))


def test_presets_follow_the_methods():
    aps = presets.aps_cifar()
    assert (aps.scale, aps.blur_p, aps.solarize_p) == ((0.15, 1.0), 0.0, 0.0)
    v1, v2 = presets.patchmix_cifar(1), presets.patchmix_cifar(2)
    assert (v1.blur_p, v1.solarize_p, v2.blur_p, v2.solarize_p) == (1.0, 0.0, 0.1, 0.2)
    assert presets.ccrop_cifar().scale == (0.2, 1.0)
    assert presets.dino_query().flip_p == 0.0
    with pytest.raises(ViewConfigError, match="views 1 and 2"):
        presets.patchmix_cifar(3)
    with pytest.raises(ViewConfigError, match="scale"):
        C.sample_crop_boxes(2, 8, 8, scale=(0.5, 0.1), generator=_gen(0))


def test_a_methods_views_are_both_crops_then_each_views_colours_from_the_one_source():
    # the two stages: the geometry of view 1 then view 2 (box, flip), then view 1's and view 2's photometric steps;
    # two different crops of every image, and one seed reproduces them
    cfg = {"method": "patchmix", "arch": "vit_pico_patch8_32", "views": {"mean_std": "cifar"},
           "framework": {"projector": {"hidden": 16, "out": 8}, "predictor": {"hidden": 16, "out": 8}}}
    method = build_method(cfg, num_images=8, total_epochs=1, device=torch.device("cpu"))
    images = torch.rand(8, 3, 32, 32, generator=_gen(12))
    views = method.views(images, torch.arange(8), _gen(3), 0)
    g = _gen(3)
    p1, p2 = method.pipelines[:2]
    geoms = []
    for p in (p1, p2):
        boxes = C.sample_crop_boxes(8, 32, 32, scale=p.cfg.scale, ratio=p.cfg.ratio, generator=g)
        geoms.append((boxes, torch.rand(8, generator=g) < p.cfg.flip_p))
    crops = [C.hflip(C.resized_crops(images, b, 32, interpolation=p.cfg.interpolation), f)
             for (b, f), p in zip(geoms, (p1, p2))]
    x1, x2 = p1.photometric(crops[0], g), p2.photometric(crops[1], g)
    assert torch.equal(views["x1"], x1) and torch.equal(views["x2"], x2)
    assert p1.cfg.blur_p != p2.cfg.blur_p  # the order of the two is seen
    assert not torch.equal(geoms[0][0], geoms[1][0])  # the second view's crop is a fresh draw
    again = method.views(images, torch.arange(8), _gen(3), 0)
    other = method.views(images, torch.arange(8), _gen(4), 0)
    assert all(torch.equal(views[k], again[k]) for k in views)
    assert not torch.equal(views["x1"], other["x1"])
