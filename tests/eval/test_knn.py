import pytest
import torch
from hypothesis import given, settings, strategies as st

from sslzoo.eval.knn import KNN_PRESETS, knn_accuracy, knn_classify, knn_few_shot


def naive_dino_knn(train, labels, test, k, temperature, num_classes):
    """DINO's weighted vote, one query at a time, straight from the definition."""
    train = train / train.norm(dim=1, keepdim=True)
    preds = []
    for q in test:
        q = q / q.norm()
        sims = [(float(q @ t), i) for i, t in enumerate(train)]
        sims.sort(key=lambda s: (-s[0], s[1]))
        votes = [0.0] * num_classes
        for s, i in sims[:k]:
            votes[int(labels[i])] += torch.tensor(s / temperature).exp().item()
        preds.append(max(range(num_classes), key=lambda c: (votes[c], -c)))
    return torch.tensor(preds)


def _data(seed, n=300, q=60, d=16, c=5):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(c, d, generator=g)
    labels = torch.randint(0, c, (n,), generator=g)
    train = centers[labels] + torch.randn(n, d, generator=g)
    test_labels = torch.randint(0, c, (q,), generator=g)
    test = centers[test_labels] + torch.randn(q, d, generator=g)
    return train, labels, test, test_labels


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.sampled_from([1, 5, 20, 50]), temperature=st.sampled_from([0.07, 0.1, 1.0]))
def test_equals_the_naive_vote_on_random_features(seed, k, temperature):
    train, labels, test, _ = _data(seed)
    expected = naive_dino_knn(train, labels, test, k, temperature, 5)
    for backend in ("torch", "faiss"):
        for chunk in (None, 7):
            got = knn_classify(train, labels, test, k=k, temperature=temperature, backend=backend, chunk_size=chunk)
            assert torch.equal(got, expected), (backend, chunk)


def test_several_k_in_one_pass_and_presets():
    train, labels, test, test_labels = _data(1, n=500, q=100)
    multi = knn_classify(train, labels, test, k=(10, 20, 200), temperature=0.07)
    for k in (10, 20, 200):
        assert torch.equal(multi[k], knn_classify(train, labels, test, k=k, temperature=0.07))
    acc = knn_accuracy(train, labels, test, test_labels, **KNN_PRESETS["knn:dino"])
    assert set(acc) == {10, 20, 100, 200} and acc[20] > 60  # separable clusters
    assert KNN_PRESETS["knn:instdisc"] == {"k": (200,), "temperature": 0.1}


def test_faiss_and_torch_agree_on_a_large_bank_of_near_duplicates():
    g = torch.Generator().manual_seed(3)
    base = torch.randn(50, 32, generator=g)
    train = base.repeat(200, 1) + 1e-4 * torch.randn(10_000, 32, generator=g)  # many near-ties
    labels = torch.randint(0, 10, (10_000,), generator=g)
    test = torch.randn(300, 32, generator=g)
    a = knn_classify(train, labels, test, k=(20, 100), backend="torch")
    b = knn_classify(train, labels, test, k=(20, 100), backend="faiss")
    assert all(torch.equal(a[k], b[k]) for k in (20, 100))


def test_k_larger_than_the_bank_uses_the_whole_bank():
    train, labels, test, _ = _data(2, n=12)
    assert torch.equal(knn_classify(train, labels, test, k=100), naive_dino_knn(train, labels, test, 12, 0.07, 5))


def test_few_shot_mean_and_std():
    train, labels, test, test_labels = _data(4, n=400, q=100)
    r = knn_few_shot(train, labels, test, test_labels, shots=5, seeds=(0, 1, 2), k=5)
    per = torch.tensor(r["per_seed"])
    assert len(per) == 3 and r["mean"] == pytest.approx(per.mean().item())
    assert r["std"] == pytest.approx(per.std(unbiased=False).item())
    assert r["per_seed"] != [r["per_seed"][0]] * 3  # different draws per seed
    with pytest.raises(ValueError, match="fewer than"):
        knn_few_shot(train, labels, test, test_labels, shots=1000)


@pytest.mark.parametrize("bad", ["width", "empty", "labels", "k"])
def test_bad_inputs(bad):
    train, labels, test, _ = _data(5)
    kwargs = {}
    if bad == "width":
        test = test[:, :3]
    elif bad == "empty":
        train, labels = train[:0], labels[:0]
    elif bad == "labels":
        labels = labels.float()
    else:
        kwargs["k"] = 0
    with pytest.raises(ValueError):
        knn_classify(train, labels, test, **kwargs)


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 5), width=st.integers(1, 3000), n=st.integers(1, 40), seed=st.integers(0, 2**16),
       levels=st.sampled_from([0, 3, 50]))
def test_the_block_pruned_top_n_finds_the_same_values_as_topk(rows, width, n, seed, levels):
    """Exact: the same multiset of values as a full top-k, with many ties when ``levels`` quantises the values."""
    from sslzoo.eval.knn import _top_n

    n = min(n, width)
    sims = torch.randn(rows, width, generator=torch.Generator().manual_seed(seed))
    if levels:
        sims = (sims * levels).round()
    idx = _top_n(sims, n)
    assert idx.shape == (rows, n) and all(len(set(r.tolist())) == n for r in idx)  # n distinct columns
    got = sims.gather(1, idx).sort(dim=1).values
    torch.testing.assert_close(got, sims.topk(n, dim=1).values.sort(dim=1).values, rtol=0, atol=0)
