import pytest
import torch

from sslzoo.eval.linear import linear_probe, stratified_split, train_heads
from sslzoo.validation import InvalidOptionError


def _blobs(seed, n=600, d=20, c=4, noise=1.0):
    centers = 3 * torch.randn(c, d, generator=torch.Generator().manual_seed(1234))  # shared by train and test
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % c
    x = centers[y] + noise * torch.randn(n, d, generator=g)
    return x, y


def test_separable_data_is_learned_and_the_best_head_is_chosen_on_validation():
    x, y = _blobs(0)
    xt, yt = _blobs(1, n=200)
    r = linear_probe(x, y, xt, yt, epochs=20, seed=0)
    assert r["protocol"] == "linear:frozen"
    assert r["best"]["test_acc"] > 95
    assert r["best"]["val_acc"] == max(s["val_acc"] for s in r["sweep"])
    assert len(r["sweep"]) == 8


def test_parallel_sweep_equals_training_each_head_alone():
    x, y = _blobs(2, noise=3.0)
    lrs, wds = (0.01, 0.3), (0.0, 1e-2)
    w_all, b_all, grid = train_heads(x, y, num_classes=4, lrs=lrs, weight_decays=wds, epochs=3, batch_size=64, seed=7)
    for i, (lr, wd) in enumerate(grid):
        w, b, _ = train_heads(x, y, num_classes=4, lrs=(lr,), weight_decays=(wd,), epochs=3, batch_size=64, seed=7)
        torch.testing.assert_close(w_all[i], w[0], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(b_all[i], b[0], rtol=1e-4, atol=1e-5)
    # the heads really differ: a broken implementation sharing one head would pass the loop above only by accident
    assert not torch.allclose(w_all[0], w_all[2])


def test_deterministic_with_a_seed_and_sensitive_to_it():
    x, y = _blobs(3, noise=4.0)
    xt, yt = _blobs(4, n=200, noise=4.0)
    a = linear_probe(x, y, xt, yt, epochs=5, seed=1)
    b = linear_probe(x, y, xt, yt, epochs=5, seed=1)
    c = linear_probe(x, y, xt, yt, epochs=5, seed=2)
    assert a == b
    assert a["sweep"] != c["sweep"]


def test_full_batch_and_weight_decay_grid():
    x, y = _blobs(5)
    r = linear_probe(x, y, x, y, lrs=(0.1,), weight_decays=(0.0, 0.1), epochs=30, batch_size=None)
    assert [s["weight_decay"] for s in r["sweep"]] == [0.0, 0.1]
    assert r["best"]["test_acc"] > 95


def test_validation_split_is_stratified():
    y = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    fit, held = stratified_split(y, 0.1, seed=0)
    assert torch.bincount(y[held]).tolist() == [5, 3, 2]
    assert len(set(fit.tolist()) & set(held.tolist())) == 0 and len(fit) + len(held) == 100


def test_bad_inputs():
    x, y = _blobs(6)
    with pytest.raises(ValueError, match="width"):
        linear_probe(x, y, x[:, :3], y)
    with pytest.raises(ValueError, match="integers"):
        linear_probe(x, y.float(), x, y)
    with pytest.raises(ValueError, match="needs at least one value"):
        linear_probe(x, y, x, y, lrs=())
    with pytest.raises(InvalidOptionError, match=r"epochs \(--epochs\) must be at least 1, got 0"):
        linear_probe(x, y, x, y, epochs=0)
    with pytest.raises(InvalidOptionError, match="greater than 0"):
        linear_probe(x, y, x, y, lrs=(0.1, -1.0))
    with pytest.raises(InvalidOptionError, match="weight_decays"):
        linear_probe(x, y, x, y, weight_decays=(-0.1,))
