"""dense:linear and dense:nn, and the segmentation scores they report.

The scores are checked against an independent per-pixel count; the protocols run on an oracle extractor whose patch
features encode their label, where mIoU is known: 100 on tiles aligned with the patches, and a computable fraction
where a tile boundary falls inside a patch.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from sslzoo.data.seg_layouts import open_segmentation
from sslzoo.eval import dense_nn
from sslzoo.eval.dense import dense_eval
from sslzoo.eval.seg_metrics import confusion_matrix, scores_from_confusion, upsampled_prediction
from tests.eval.dense_fixtures import OracleExtractor, expected_stripe_scores, quadrants, stripes, write_layout


def _independent_scores(pred: np.ndarray, truth: np.ndarray, classes: int) -> tuple[float, float]:
    ious, correct, counted = [], 0, 0
    for c in range(classes):
        t, p = truth == c, (pred == c) & (truth != 255)
        if t.sum() == 0:
            continue
        ious.append((t & p).sum() / (t | p).sum())
    for tv, pv in zip(truth.ravel(), pred.ravel()):
        if tv != 255:
            counted += 1
            correct += int(tv == pv)
    return 100 * float(np.mean(ious)), 100 * correct / counted


def test_miou_matches_an_independent_count_on_random_predictions() -> None:
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 5, size=(3, 20, 17)).astype(np.uint8)  # class 5 never occurs in the truth
    truth[rng.random(truth.shape) < 0.2] = 255
    pred = rng.integers(0, 6, size=truth.shape)
    conf = sum(confusion_matrix(torch.from_numpy(p), torch.from_numpy(t), 6) for p, t in zip(pred, truth))
    got = scores_from_confusion(conf)
    miou, acc = _independent_scores(pred, truth, 6)
    assert got["miou"] == pytest.approx(miou, abs=1e-9)
    assert got["pixel_acc"] == pytest.approx(acc, abs=1e-9)
    assert got["iou"][5] is None  # absent from the truth: not averaged in
    assert got["pixels"] == int((truth != 255).sum())


def test_ignore_pixels_never_count() -> None:
    truth = torch.tensor([[0, 1, 255, 255]])
    conf_a = confusion_matrix(torch.tensor([[0, 1, 0, 0]]), truth, 2)
    conf_b = confusion_matrix(torch.tensor([[0, 1, 1, 1]]), truth, 2)
    assert torch.equal(conf_a, conf_b) and conf_a.sum() == 2
    assert scores_from_confusion(conf_a)["miou"] == 100.0


def test_bilinear_upsampling_of_patch_scores_moves_boundaries_to_patch_edges() -> None:
    scores = torch.zeros(1, 2, 1, 4)
    scores[0, 0, 0, 0] = 1.0
    scores[0, 1, 0, 1:] = 1.0
    pred = upsampled_prediction(scores, (1, 32))[0, 0]
    assert pred[:8].eq(0).all() and pred[8:].eq(1).all()


@pytest.fixture(scope="module")
def oracle_data(tmp_path_factory) -> Path:
    """Train: 2x2 tiles of 16 px (aligned with 8 px patches), every class in every position. Val: aligned tiles,
    and two-class stripes split at x=10, inside the second patch column."""
    root = tmp_path_factory.mktemp("oracle")
    perms = [(0, 1, 2, 3), (1, 2, 3, 0), (2, 3, 0, 1), (3, 0, 1, 2), (0, 2, 1, 3), (3, 1, 2, 0)]
    train = [quadrants(32, p) for p in perms * 2]
    for mask in train[:6]:  # ignored pixels: never a target of dense:linear, never in the dense:nn bank
        mask[:8, :8] = 255
    aligned = [quadrants(32, p) for p in perms[:3]]
    write_layout(root / "aligned", {"train": train, "val": aligned}, classes=["a", "b", "c", "d"])
    write_layout(root / "misaligned", {"train": train, "val": [stripes(32, 32, [10], [0, 1])] * 2},
                 classes=["a", "b", "c", "d"])
    return root


@pytest.mark.parametrize("protocol", ["dense:nn", "dense:linear"])
def test_oracle_features_score_100_on_aligned_tiles(oracle_data: Path, protocol: str) -> None:
    result = dense_eval(OracleExtractor(4), str(oracle_data / "aligned"), protocol=protocol, cache=False, k=5,
                        epochs=30, progress=False)
    assert result["protocol"] == protocol
    assert result["miou"] == pytest.approx(100.0) and result["pixel_acc"] == pytest.approx(100.0)


def test_oracle_features_at_a_known_misalignment_score_the_expected_fraction(oracle_data: Path) -> None:
    result = dense_eval(OracleExtractor(4), str(oracle_data / "misaligned"), protocol="nn", cache=False, k=5,
                        progress=False)
    miou, acc = expected_stripe_scores(32, 8, 10)
    assert miou == pytest.approx(100 * (0.8 + 22 / 24) / 2)
    assert result["miou"] == pytest.approx(miou)
    assert result["pixel_acc"] == pytest.approx(acc)
    assert result["iou"]["c"] is None and result["iou"]["d"] is None  # absent from val: not in the mean


def test_dense_nn_backends_and_bank_chunks_give_the_same_neighbours() -> None:
    gen = torch.Generator().manual_seed(0)
    bank = torch.randn(3000, 16, generator=gen)
    bank[102] = bank[100]  # an exact tie, broken by the lower bank position
    queries = torch.cat([torch.randn(50, 16, generator=gen), bank[100:101]])
    rows = torch.arange(0, 3000, 2)  # every other row: a sampled bank
    ref = dense_nn.bank_neighbours(bank, rows, queries, 10, backend="torch", chunk_rows=10_000)
    for backend, chunk in (("faiss", 10_000), ("torch", 1024), ("faiss", 1024)):
        sims, idx = dense_nn.bank_neighbours(bank, rows, queries, 10, backend=backend, chunk_rows=chunk)
        assert torch.equal(idx, ref[1]) and torch.equal(sims, ref[0])
    brute = (torch.nn.functional.normalize(queries, dim=1) @ torch.nn.functional.normalize(bank[rows], dim=1).T).numpy()
    expect = np.stack([np.lexsort((np.arange(len(rows)), -row))[:10] for row in brute])
    assert np.array_equal(ref[1].numpy(), expect)
    assert ref[1][-1, :2].tolist() == [50, 51]


def test_bank_labels_are_label_distributions_and_the_bound_is_seeded() -> None:
    masks = torch.zeros(2, 16, 16, dtype=torch.uint8)
    masks[0, :, :4] = 1  # patch (0, 0) of image 0: half class 1
    masks[1, :8, :8] = 255  # patch (0, 0) of image 1: no labelled pixel, left out of the bank
    masks[1, :8, 8:12] = 255  # patch (0, 1) of image 1: half ignored, the rest class 0
    rows, labels = dense_nn.build_bank(masks, 2, 2, 100, seed=0)
    assert rows.tolist() == [0, 1, 2, 3, 5, 6, 7]
    assert labels[0].tolist() == [0.5, 0.5] and labels[1].tolist() == [1.0, 0.0] and labels[4].tolist() == [1.0, 0.0]
    a = dense_nn.build_bank(masks, 2, 2, 4, seed=1)
    b = dense_nn.build_bank(masks, 2, 2, 4, seed=1)
    c = dense_nn.build_bank(masks, 2, 2, 4, seed=2)
    assert len(a[0]) == 4 and torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])
    assert math.isclose(float(labels.float().sum(1).min()), 1.0)


def test_a_val_patch_takes_the_softmax_weighted_labels_of_its_k_nearest_bank_patches() -> None:
    bank = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    labels = torch.eye(3).half()
    scores = dense_nn.nn_class_scores(bank, torch.arange(3), labels, torch.tensor([[2.0, 0.0]]), k=2,
                                      temperature=0.1)
    w = torch.tensor([1.0, 0.8]).div(0.1).softmax(0)
    torch.testing.assert_close(scores, torch.tensor([[w[0], w[1], 0.0]]))


def test_raw_pixel_patches_are_the_pixels_under_each_patch(tiny_vit) -> None:
    from sslzoo.eval.dense_baselines import raw_pixels_like
    from sslzoo.eval.patch_features import patch_tokens

    pixels = raw_pixels_like(tiny_vit)
    x = torch.randn(2, 3, 32, 32)
    grid = patch_tokens(pixels, x)
    assert grid.shape == (2, 8, 8, 48)
    assert torch.equal(grid[1, 2, 5], x[1, :, 8:12, 20:24].reshape(-1))


@pytest.mark.parametrize("out_size", [12, 13, 96, 100])
def test_the_linear_heads_upsample_exactly_as_bilinear_interpolation(out_size: int) -> None:
    from sslzoo.eval.dense_linear import bilinear_matrix, upsample_logits

    x = torch.randn(2, 3, 12, 7)
    ref = torch.nn.functional.interpolate(x, size=(out_size, out_size), mode="bilinear", align_corners=False)
    got = upsample_logits(x, bilinear_matrix(out_size, 12), bilinear_matrix(out_size, 7))
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
