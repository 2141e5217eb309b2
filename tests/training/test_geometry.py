"""Per-sample draws and the geometric stage of the views: what makes a worker, a rank and one process agree."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from training.views.crops import resized_crops
from training.views.geometry import CropSpec, crop_in_memory, draw_geometry
from training.views.sample_draws import GEOMETRY, PHOTOMETRIC, SampleDraws, sample_keys

SPECS = [CropSpec("x1", 16, (0.2, 1.0)), CropSpec("locals", 8, (0.05, 0.4), count=3, interpolation="bicubic"),
         CropSpec("queries", 8, (0.05, 0.25), flip_p=0.0, count=2)]

indices_st = st.lists(st.integers(0, 2**40), min_size=1, max_size=12, unique=True)


@settings(max_examples=40, deadline=None)
@given(indices=indices_st, seed=st.integers(0, 2**31), epoch=st.integers(0, 1000), data=st.data())
def test_a_samples_draws_do_not_depend_on_its_batch(indices, seed, epoch, data) -> None:
    """Row b of a batch's draws equals the draws of sample b alone: the basis of world-size invariance."""
    b = data.draw(st.integers(0, len(indices) - 1))
    batch = SampleDraws(sample_keys(seed, epoch, torch.tensor(indices), GEOMETRY))
    alone = SampleDraws(sample_keys(seed, epoch, torch.tensor([indices[b]]), GEOMETRY))
    u_batch, u_alone = batch.uniform((len(indices), 5)), alone.uniform((1, 5))
    assert torch.equal(u_batch[b], u_alone[0])
    assert torch.equal(batch.expand(3).uniform((3 * len(indices), 2))[3 * b:3 * b + 3],
                       alone.expand(3).uniform((3, 2)))
    assert bool(((u_batch >= 0) & (u_batch < 1)).all())


def test_streams_epochs_and_seeds_give_other_numbers() -> None:
    idx = torch.arange(64)
    base = SampleDraws(sample_keys(0, 0, idx, GEOMETRY)).uniform((64, 4))
    for other in (sample_keys(0, 0, idx, PHOTOMETRIC), sample_keys(0, 1, idx, GEOMETRY),
                  sample_keys(1, 0, idx, GEOMETRY)):
        assert not torch.isclose(SampleDraws(other).uniform((64, 4)), base).any()
    # successive draws of one source move on; rows are not copies of each other
    draws = SampleDraws(sample_keys(0, 0, idx, GEOMETRY))
    first, second = draws.uniform((64, 4)), draws.uniform((64, 4))
    assert torch.equal(first, base) and not torch.isclose(first, second).any()
    assert torch.unique(base[:, 0]).numel() == 64


def test_uniform_and_normal_have_their_laws() -> None:
    draws = SampleDraws(sample_keys(3, 0, torch.arange(20000), PHOTOMETRIC))
    u = draws.uniform((20000, 2))
    assert abs(float(u.mean()) - 0.5) < 0.01 and abs(float(u.var()) - 1 / 12) < 0.003
    assert float(torch.corrcoef(u.t())[0, 1]) < 0.03  # the columns are independent
    n = draws.normal((20000,))
    assert abs(float(n.mean())) < 0.03 and abs(float(n.std()) - 1) < 0.03


@settings(max_examples=25, deadline=None)
@given(indices=indices_st, height=st.integers(20, 300), width=st.integers(20, 300), epoch=st.integers(0, 50))
def test_boxes_lie_in_the_image_and_each_image_gets_its_own(indices, height, width, epoch) -> None:
    idx = torch.tensor(indices)
    geometry = draw_geometry(SPECS, height, width, SampleDraws(sample_keys(0, epoch, idx, GEOMETRY)), indices=idx,
                             epoch=epoch)
    assert geometry["x1"].boxes.shape == (len(indices), 4) and geometry["locals"].boxes.shape == (len(indices), 3, 4)
    for name, g in geometry.items():
        top, left, h, w = g.boxes.reshape(-1, 4).unbind(-1)
        assert bool(((top >= 0) & (left >= 0) & (h >= 1) & (w >= 1)).all()), name
        assert bool(((top + h <= height) & (left + w <= width)).all()), name
    assert not geometry["queries"].flipped.any()  # flip_p 0
    for b in range(len(indices)):  # the geometry of one image is what a worker, holding only that image, draws
        one = idx[b:b + 1]
        alone = draw_geometry(SPECS, height, width, SampleDraws(sample_keys(0, epoch, one, GEOMETRY)), indices=one,
                              epoch=epoch)
        for name in geometry:
            assert torch.equal(alone[name].boxes[0], geometry[name].boxes[b]), name
            assert torch.equal(alone[name].flipped[0], geometry[name].flipped[b]), name


def test_boxes_follow_random_resized_crops_law() -> None:
    idx = torch.arange(4000)
    g = draw_geometry(SPECS, 64, 64, SampleDraws(sample_keys(0, 0, idx, GEOMETRY)), indices=idx, epoch=0)
    area = g["x1"].boxes[:, 2] * g["x1"].boxes[:, 3] / 64**2
    assert 0.17 < float(area.min()) and float(area.max()) <= 1.0
    # torchvision's own sampler (rejection of boxes that do not fit, then a centre crop) gives the same law
    from torchvision.transforms import RandomResizedCrop

    torch.manual_seed(0)
    image = torch.zeros(1, 64, 64)
    theirs = torch.tensor([RandomResizedCrop.get_params(image, [0.2, 1.0], [3 / 4, 4 / 3]) for _ in range(4000)])
    their_area = theirs[:, 2] * theirs[:, 3] / 64**2
    assert abs(float(area.mean()) - float(their_area.mean())) < 0.015
    assert abs(float(area.std()) - float(their_area.std())) < 0.015
    aspect = (g["x1"].boxes[:, 3] / g["x1"].boxes[:, 2]).log()
    assert float(aspect.abs().max()) < 0.33  # ratio (3/4, 4/3), up to rounding
    assert abs(float(g["x1"].flipped.float().mean()) - 0.5) < 0.03
    local = g["locals"].boxes[..., 2] * g["locals"].boxes[..., 3] / 64**2
    assert float(local.max()) < 0.45 and torch.unique(local).numel() > 100


def test_crops_in_memory_are_the_resized_flipped_boxes_of_their_own_image() -> None:
    images = torch.rand(3, 3, 40, 40, generator=torch.Generator().manual_seed(6))
    idx = torch.arange(3)
    geometry = draw_geometry(SPECS, 40, 40, SampleDraws(sample_keys(0, 0, idx, GEOMETRY)), indices=idx, epoch=0)
    crops = crop_in_memory(images, geometry, SPECS)
    assert crops["x1"].shape == (3, 3, 16, 16) and crops["locals"].shape == (3, 3, 3, 8, 8)
    for spec in SPECS:
        g = geometry[spec.name]
        boxes = g.boxes if spec.count is None else g.boxes[:, 0]
        flipped = g.flipped if spec.count is None else g.flipped[:, 0]
        got = crops[spec.name] if spec.count is None else crops[spec.name][:, 0]
        expected = resized_crops(images, boxes, spec.size, interpolation=spec.interpolation)
        expected = torch.where(flipped.view(-1, 1, 1, 1), expected.flip(-1), expected)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_the_key_head_is_mix32_of_python_ints() -> None:
    """The cached per-(seed, stream, epoch) head is computed without tensors, with mix32's bits: a tensor mode active
    when it is first asked (the fake-CUDA tests answer int() with 1) cannot poison the cache."""
    from training.views import sample_draws

    for value in (0, 1, 12345, 2**32 - 1, 2**40 + 7):
        expected = int(sample_draws.mix32(torch.tensor([value & 0xFFFFFFFF], dtype=torch.int64))[0])
        assert sample_draws._mix_int(value) == expected
