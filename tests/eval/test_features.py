"""sslzoo.eval.features: pools, batching paths, and the feature cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sslzoo.data import DecodedSplit, eval_transform, open_dataset
from sslzoo.errors import SslzooError
from sslzoo.eval.features import POOLS, extract_features, pool_features, weights_sha256


@pytest.fixture(scope="module")
def split() -> DecodedSplit:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (10, 3, 32, 32), dtype=torch.uint8, generator=gen)
    return DecodedSplit(images, torch.arange(10) % 3, ["a", "b", "c"], "fingerprint-of-10-random-images")


def test_pool_shapes_and_definitions(tiny_vit, split: DecodedSplit) -> None:
    x = eval_transform(tiny_vit)(split.images)
    with torch.inference_mode():
        tokens = tiny_vit.forward_features(x)
        feats = {pool: extract_features(tiny_vit, split, pool=pool, progress=False)[0] for pool in POOLS}
    dim = tiny_vit.embed_dim
    assert {p: tuple(f.shape) for p, f in feats.items()} == {
        "cls": (10, dim), "avg": (10, dim), "cls+avg": (10, 2 * dim), "last4": (10, 4 * dim)
    }
    torch.testing.assert_close(feats["cls"], tokens[:, 0])
    torch.testing.assert_close(feats["avg"], tokens[:, tiny_vit.num_prefix_tokens :].mean(1))
    torch.testing.assert_close(feats["cls+avg"], torch.cat([feats["cls"], feats["avg"]], 1))
    # the last of the four is the final block's class token after the final norm: the "cls" feature
    torch.testing.assert_close(feats["last4"][:, 3 * dim :], feats["cls"], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(feats["last4"][:, :dim], feats["cls"], atol=1e-3)


def test_last4_is_dinos_concatenation_of_normed_block_outputs(tiny_vit) -> None:
    x = torch.randn(2, 3, 32, 32)
    outs = []
    with torch.inference_mode():
        h = tiny_vit._pos_embed(tiny_vit.patch_embed(x))
        for block in tiny_vit.blocks:
            h = block(h)
            outs.append(tiny_vit.norm(h)[:, 0])
        torch.testing.assert_close(pool_features(tiny_vit, x, "last4"), torch.cat(outs[-4:], 1))


def test_batch_size_and_dataset_path_do_not_change_features(tiny_vit, split: DecodedSplit) -> None:
    direct, labels = extract_features(tiny_vit, split, batch_size=4, progress=False)
    from sslzoo.data import DecodedDataset

    via_loader, labels2 = extract_features(
        tiny_vit, torch.utils.data.Subset(DecodedDataset(split), range(10)), batch_size=3, progress=False
    )
    torch.testing.assert_close(direct, via_loader, atol=1e-5, rtol=1e-5)
    assert labels.tolist() == labels2.tolist() == split.labels.tolist()
    assert direct.dtype == torch.float32


def test_model_mode_is_restored_and_errors_are_clear(tiny_vit_factory, split: DecodedSplit) -> None:
    model = tiny_vit_factory(depth=2).train()
    extract_features(model, split, progress=False)
    assert model.training
    with pytest.raises(ValueError, match="Unknown pool 'max'"):
        extract_features(model, split, pool="max", progress=False)
    with pytest.raises(SslzooError, match="at least 4 blocks"):
        extract_features(model, split, pool="last4", progress=False)


def test_feature_cache_hits_and_is_keyed(tiny_vit, split: DecodedSplit, tmp_path: Path, monkeypatch) -> None:
    first = extract_features(tiny_vit, split, cache_dir=tmp_path, progress=False)
    files = list((tmp_path / "features").glob("*.safetensors"))
    assert len(files) == 1

    def no_forward(*args, **kwargs):
        raise AssertionError("a cache hit must not run the model")

    with monkeypatch.context() as m:
        m.setattr(tiny_vit, "forward_features", no_forward)
        hit = extract_features(tiny_vit, split, cache_dir=tmp_path, progress=False)
    assert torch.equal(hit[0], first[0]) and torch.equal(hit[1], first[1])

    extract_features(tiny_vit, split, pool="avg", cache_dir=tmp_path, progress=False)
    assert len(list((tmp_path / "features").glob("*.safetensors"))) == 2
    with torch.no_grad():
        tiny_vit.blocks[0].mlp.fc1.weight[0, 0] += 1.0
    changed = extract_features(tiny_vit, split, cache_dir=tmp_path, progress=False)
    assert len(list((tmp_path / "features").glob("*.safetensors"))) == 3
    assert not torch.equal(changed[0], first[0])
    other = DecodedSplit(split.images.flip(0), split.labels.flip(0), split.classes, "another-fingerprint")
    extract_features(tiny_vit, other, cache_dir=tmp_path, progress=False)
    assert len(list((tmp_path / "features").glob("*.safetensors"))) == 4


def test_weights_sha256_sees_every_parameter(tiny_vit_factory) -> None:
    a, b = tiny_vit_factory(depth=1, seed=0), tiny_vit_factory(depth=1, seed=0)
    assert weights_sha256(a) == weights_sha256(b)
    with torch.no_grad():
        b.norm.bias[-1] += 1e-3
    assert weights_sha256(a) != weights_sha256(b)


def test_a_dataset_without_fingerprint_needs_a_cache_key(tiny_vit, split: DecodedSplit, tmp_path: Path) -> None:
    plain = torch.utils.data.TensorDataset(split.images, split.labels)
    with pytest.raises(SslzooError, match="cache_key="):
        extract_features(tiny_vit, plain, cache_dir=tmp_path, progress=False)
    feats, _ = extract_features(tiny_vit, plain, cache_dir=tmp_path, cache_key="random-10", progress=False)
    assert feats.shape == (10, 64) and len(list((tmp_path / "features").glob("*"))) == 1


def test_float_images_from_a_dataset_transform_are_used_as_given(tiny_vit) -> None:
    tf = eval_transform(tiny_vit)
    ds = open_dataset("sample", "test", transform=tf)
    feats, labels = extract_features(tiny_vit, torch.utils.data.Subset(ds, range(8)), batch_size=4, progress=False)
    with torch.inference_mode():
        expected = tiny_vit.forward_features(torch.stack([ds[i][0] for i in range(8)]))[:, 0]
    torch.testing.assert_close(feats, expected, atol=1e-5, rtol=1e-5)
    assert labels.tolist() == [0] * 8
