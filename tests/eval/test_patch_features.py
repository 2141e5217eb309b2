"""Patch-token features: what they are, their cache key, streaming to disk, input sizes, and interrupted extraction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from sslzoo.data import DecodedSplit
from sslzoo.data.segmentation import InMemorySegmentation
from sslzoo.eval import feature_store
from sslzoo.eval.features import extract_features
from sslzoo.eval.patch_features import check_size, extract_patch_features, patch_tokens
from sslzoo.validation import InvalidOptionError


@pytest.fixture(scope="module")
def seg() -> InMemorySegmentation:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8, generator=gen)
    masks = torch.randint(0, 3, (6, 32, 32), dtype=torch.uint8, generator=gen)
    return InMemorySegmentation(images, masks, ["a", "b", "c"], "six-random-images")


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


def test_patch_pool_is_the_normed_patch_tokens_of_the_last_blocks(tiny_vit, seg) -> None:
    feats, masks = extract_features(tiny_vit, seg, pool="patch", progress=False)
    x = (seg.images.float() - torch.tensor(tiny_vit.pretrained_cfg["mean"]).view(3, 1, 1) * 255) / (
        255 * torch.tensor(tiny_vit.pretrained_cfg["std"]).view(3, 1, 1))
    with torch.inference_mode():
        tokens = tiny_vit.forward_features(x)[:, tiny_vit.num_prefix_tokens :]
        blocks = tiny_vit.forward_intermediates(x, indices=4, norm=True, output_fmt="NLC", intermediates_only=True)
    assert feats.shape == (6, 8, 8, 64) and torch.equal(masks, seg.masks)
    torch.testing.assert_close(feats.reshape(6, 64, 64), tokens, rtol=1e-5, atol=1e-5)
    four, _ = extract_features(tiny_vit, seg, pool="patch", layers=4, progress=False)
    assert four.shape == (6, 8, 8, 256)
    for i, block in enumerate(blocks):  # block i's normed tokens, in order, along the width
        torch.testing.assert_close(four[..., 64 * i : 64 * (i + 1)].reshape(6, 64, 64), block, rtol=1e-5, atol=1e-5)


def test_classification_data_gives_grids_and_labels(tiny_vit) -> None:
    split = DecodedSplit(torch.zeros(3, 3, 32, 32, dtype=torch.uint8), torch.tensor([2, 0, 1]), ["a", "b", "c"], "z")
    feats, labels = extract_features(tiny_vit, split, pool="patch", progress=False)
    assert feats.shape == (3, 8, 8, 64) and labels.tolist() == [2, 0, 1]


def test_cache_is_keyed_by_layers_and_size_and_hits(tiny_vit, seg, tmp_path: Path, monkeypatch) -> None:
    run = lambda **kw: extract_patch_features(tiny_vit, seg, cache_dir=tmp_path, progress=False, **kw)  # noqa: E731
    a, _ = run()
    run(layers=2)
    run(size=48)
    entries = _files(tmp_path / "features")
    assert len(entries) == 3  # three keys, three files
    for name in entries:
        with safe_open(str(tmp_path / "features" / name), framework="pt") as f:  # valid safetensors files
            assert f.metadata()["pool"] == "patch" and set(f.keys()) == {"features", "labels"}
    monkeypatch.setattr("sslzoo.eval.patch_features.patch_tokens", lambda *a, **k: 1 / 0)  # a hit runs no model
    again, masks = run()
    assert torch.equal(again, a) and torch.equal(masks, seg.masks)


def test_features_over_the_budget_stream_to_disk_and_read_back_the_same(tiny_vit, seg, tmp_path: Path,
                                                                         monkeypatch) -> None:
    monkeypatch.setenv("SSLZOO_CACHE", str(tmp_path))  # where the uncached stream is written, then unlinked
    in_memory, _ = extract_patch_features(tiny_vit, seg, progress=False)
    streamed, masks = extract_patch_features(tiny_vit, seg, progress=False, memory_budget_bytes=1000)
    assert feature_store.is_mapped(streamed) and not feature_store.is_mapped(in_memory)
    assert torch.equal(streamed, in_memory) and torch.equal(masks, seg.masks)
    feature_store.release_rows(streamed, 0, len(streamed))  # pages dropped, values read again from disk
    assert torch.equal(streamed, in_memory)
    assert _files(tmp_path) == []  # nothing cached, no scratch file left behind
    cached, _ = extract_patch_features(tiny_vit, seg, progress=False, memory_budget_bytes=1000, cache_dir=tmp_path)
    assert feature_store.is_mapped(cached) and torch.equal(cached, in_memory) and len(_files(tmp_path)) == 1


def _item_by_item(dataset: InMemorySegmentation, fail_at: int):
    """The items of ``dataset`` read one by one (the file datasets' path), raising as a kill would at ``fail_at``."""
    from sslzoo.data.segmentation import SegmentationDataset

    class Items(SegmentationDataset):
        classes, fingerprint, name = dataset.classes, dataset.fingerprint, "items"

        def __len__(self) -> int:
            return len(dataset)

        def __getitem__(self, i: int):
            if i >= fail_at:
                raise KeyboardInterrupt
            return dataset[i]

    return Items()


def test_an_interrupted_extraction_leaves_no_cache_entry(tiny_vit, seg, tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        extract_patch_features(tiny_vit, _item_by_item(seg, 3), cache_dir=tmp_path, batch_size=2, progress=False)
    assert _files(tmp_path) == []
    feats, masks = extract_patch_features(tiny_vit, _item_by_item(seg, 99), cache_dir=tmp_path, batch_size=2,
                                          progress=False)
    assert torch.equal(masks, seg.masks) and len(_files(tmp_path)) == 1


def test_other_sizes_resample_a_copy_and_leave_the_model_alone(tiny_vit, seg) -> None:
    before = tiny_vit.pos_embed.clone()
    feats, masks = extract_patch_features(tiny_vit, seg, size=48, progress=False)
    assert feats.shape == (6, 12, 12, 64) and masks.shape == (6, 48, 48)
    assert torch.equal(tiny_vit.pos_embed, before) and tuple(tiny_vit.patch_embed.img_size) == (32, 32)
    # the masks are resized with the images: nearest-exact keeps every value a label of the original
    assert set(np.unique(masks.numpy())) <= {0, 1, 2}
    with torch.inference_mode():
        direct = patch_tokens(tiny_vit, torch.zeros(1, 3, 32, 32))
    assert direct.shape == (1, 8, 8, 64)


def test_a_size_off_the_patch_grid_names_the_nearest_valid_sizes(tiny_vit, seg) -> None:
    with pytest.raises(InvalidOptionError, match=r"size \(--size\) 30 is not a multiple of the patch size 4: use 28 or 32"):
        extract_patch_features(tiny_vit, seg, size=30, progress=False)
    with pytest.raises(InvalidOptionError, match="use 8"):
        check_size(3, 8)
    with pytest.raises(InvalidOptionError, match=r"layers \(--layers\) 5 exceeds the model's 4 blocks"):
        extract_patch_features(tiny_vit, seg, layers=5, progress=False)
