"""The authors' releases in the registry: fetched (here from a fake Hugging Face cache), converted once, cached."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

import sslzoo
from sslzoo import cli, files, registry
from sslzoo.weights.convert import cache, convert_file
from sslzoo.errors import ChecksumError, WeightsNotFoundError

from .test_aps import aps_checkpoint
from .test_patchmix import patchmix_checkpoint
from .upstream import images, relative_error

ENTRY = "patchmix_vit_tiny_patch2_32.authors_cifar10"
VIT_T2 = dict(img_size=32, patch_size=2, embed_dim=192, depth=12, num_heads=3)


def _put_in_hf_cache(cache_root: Path, repo: str, filename: str, source: Path) -> Path:
    """A file where ``hf_hub_download(local_files_only=True)`` finds it."""
    folder = cache_root / f"models--{repo.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    target = folder / "snapshots" / commit / filename
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(source.read_bytes())
    return target


@pytest.fixture
def conversions(monkeypatch):
    """Counts the conversions that the registry path makes."""
    calls = []
    real = cache.convert

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(cache, "convert", counting)
    return calls


@pytest.fixture
def patchmix_release(tmp_path):
    """The PatchMix ViT-T/2 CIFAR-10 release file (ViT-T has no momentum encoder), in the fake HF cache."""
    entry = registry.resolve(ENTRY).weights
    path, model = patchmix_checkpoint(tmp_path, momentum=False, **VIT_T2)
    cached = _put_in_hf_cache(tmp_path / "hf", entry.hf_hub_id, entry.hf_filename, path)
    return cached, model


def _features(name: str, x: torch.Tensor, **kwargs) -> torch.Tensor:
    with torch.no_grad():
        return sslzoo.create_model(name, **kwargs).eval()(x)


def test_release_is_converted_once_then_loaded_from_the_cache(tmp_path, patchmix_release, conversions, caplog):
    source, model = patchmix_release
    x = images(n=2)
    with torch.no_grad():
        ref = model.base_encoder.features(x)
    sha = files.sha256_file(source)

    with caplog.at_level("INFO", logger="sslzoo"):
        first = sslzoo.create_model(ENTRY, pretrained=True).eval()
    with torch.no_grad():
        assert relative_error(first(x), ref) <= 1e-5
    assert len(conversions) == 1
    err = caplog.text
    assert "converted" in err and f"pinned to sha256 {sha} on first use" in err
    assert first.sslzoo_cfg["sha256"] == sha
    folder = tmp_path / "cache" / "converted" / ENTRY / sha
    assert json.loads((folder / "config.json").read_text())["sslzoo"]["converted_from"]["sha256"] == sha

    caplog.clear()
    with caplog.at_level("INFO", logger="sslzoo"):
        assert relative_error(_features("patchmix_vit_t", x, pretrained=True), ref) <= 1e-5  # alias -> default tag
    assert len(conversions) == 1 and "converted" not in caplog.text


def test_a_pinned_hash_is_checked_before_converting(patchmix_release, conversions, monkeypatch):
    entry = registry.resolve(ENTRY).weights
    monkeypatch.setitem(registry.WEIGHTS, "patchmix_vit_tiny_patch2_32", (dataclasses.replace(entry, sha256="0" * 64),))
    with pytest.raises(ChecksumError):
        sslzoo.create_model(ENTRY, pretrained=True)
    assert conversions == []


def test_aps_without_a_file_says_exactly_what_to_do(capsys):
    with pytest.raises(WeightsNotFoundError) as e:
        sslzoo.create_model("aps_vit_b", pretrained=True)
    message = str(e.value)
    for expected in (
        "aps_vit_base_patch2_32.authors_cifar10_1600ep",
        "https://huggingface.co/visresearch/aps/tree/main",
        "ViT-B/2 on CIFAR-10, 1600 epochs",
        "sslzoo.create_model('aps_vit_b', pretrained_file='FILE.pth')",
        "sslzoo convert --from aps FILE.pth OUT_DIR",
        "records no file name",
    ):
        assert expected in message, expected
    assert cli.main(["info", "aps_vit_b"]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "not pinned yet" in out and "file name not known" in out and "(reported)" in out


def test_aps_file_passed_by_the_user_is_converted_and_cached(tmp_path, conversions):
    path, model = aps_checkpoint(tmp_path, emb_dim=192, num_layer=12, num_head=3, patch_size=2)
    x = images(n=2)
    with torch.no_grad():
        ref = model.base_encoder.features(x)
    assert relative_error(_features("aps_vit_t", x, pretrained_file=path), ref) <= 1e-5
    assert relative_error(_features("aps_vit_t", x, pretrained_file=path), ref) <= 1e-5
    assert len(conversions) == 1

    # a folder converted by `sslzoo convert` is recognised and loaded as it is
    out = convert_file(path, tmp_path / "converted")
    assert relative_error(_features("aps_vit_t", x, pretrained_file=out), ref) <= 1e-5
    assert len(conversions) == 1


def test_release_entries_are_marked_reported():
    for arch in ("aps_vit_base_patch2_32", "patchmix_vit_small_patch2_32", "patchmix_vit_base_patch16_224"):
        for w in registry.WEIGHTS[arch]:
            assert w.convert_from == arch.split("_")[0] and w.sha256 is None and w.results
            assert all(r.source == "reported" for r in w.results)
    knn = [r for r in registry.resolve("patchmix_vit_small_patch2_32.authors_cifar10").weights.results if r.protocol == "knn:patchmix"]
    assert knn[0].value == 94.6 and "randomly initialised" in knn[0].notes


def test_cache_follows_the_source_file_and_refuses_a_damaged_copy(tmp_path, patchmix_release, conversions):
    source, _ = patchmix_release
    sslzoo.create_model(ENTRY, pretrained=True)
    cached = tmp_path / "cache" / "converted" / ENTRY / files.sha256_file(source) / "model.safetensors"
    data = bytearray(cached.read_bytes())
    data[-3] ^= 0xFF
    cached.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match=str(cached)):
        sslzoo.create_model(ENTRY, pretrained=True)

    new_file, other = patchmix_checkpoint(tmp_path, momentum=False, seed=5, **VIT_T2)
    entry = registry.resolve(ENTRY).weights
    _put_in_hf_cache(tmp_path / "hf", entry.hf_hub_id, entry.hf_filename, new_file)
    with pytest.raises(ChecksumError, match="sslzoo verify --repin"):  # the upstream file changed: its pin refuses it
        sslzoo.create_model(ENTRY, pretrained=True)
    assert cli.main(["verify", "--repin", ENTRY]) == cli.EXIT_OK  # on purpose
    x = images(n=2)
    with torch.no_grad():
        assert relative_error(_features(ENTRY, x, pretrained=True), other.base_encoder.features(x)) <= 1e-5
    assert len(conversions) == 2  # a new source file is converted again, into its own folder


def test_the_aps_release_is_found_in_the_repository_listing(tmp_path, monkeypatch, conversions):
    """Online: the listing (mocked) is read and cached; then offline: the cached listing and Hugging Face cache."""
    from sslzoo.weights import release_listing as release_files

    path, model = aps_checkpoint(tmp_path, emb_dim=192, num_layer=12, num_head=3, patch_size=2)
    name = "weight/pretrain/cifar10/tiny_1600ep_1e-3_97.pth"  # the README's example path, for ViT-T on CIFAR-10
    listing = ["README.md", "weight/pretrain/cifar100/small_1600ep_5e-4_100.pth", name,
               "weight/pretrain/cifar10/tiny_3200ep_1e-3_97.pth", "weight/finetune/cifar10/tiny_1600ep_best.pth"]
    monkeypatch.setattr("huggingface_hub.list_repo_files", lambda repo_id: listing)
    assert release_files.repo_files("visresearch/aps", offline=False) == sorted(listing)
    monkeypatch.setattr("huggingface_hub.list_repo_files", lambda repo_id: 1 / 0)  # offline from here on
    _put_in_hf_cache(tmp_path / "hf", "visresearch/aps", name, path)
    x = images(n=2)
    with torch.no_grad():
        ref = model.base_encoder.features(x)
    assert relative_error(_features("aps_vit_t", x, pretrained=True), ref) <= 1e-5  # alias -> cifar10, 1600 ep
    assert len(conversions) == 1
    with pytest.raises(WeightsNotFoundError) as e:
        sslzoo.create_model("aps_vit_base_patch2_32.authors_cifar100_3200ep", pretrained=True)
    assert "no pre-training file for base, CIFAR-100, 3200 epochs" in str(e.value) and name in str(e.value)


def test_a_patchmix_file_missing_under_its_readme_name_is_found_in_the_listing(tmp_path, monkeypatch, conversions,
                                                                                caplog):
    """The README's names have mistakes: a name the repository lacks falls back to its listing, and says so."""
    from sslzoo.weights import pins, release_listing as release_files

    entry = "patchmix_vit_tiny_patch2_32.authors_cifar100"
    w = registry.resolve(entry).weights
    assert w.hf_filename == "pretrain/cifar100/vit-tiny-800-68.8.pth"  # the README's name
    real = "pretrain/cifar100/vit-tiny-800-68.9.pth"  # the repository's (mocked) name for the same checkpoint
    listing = ["README.md", "pretrain/cifar10/vit-tiny-800-92.9.pth", real, "finetune/cifar100/vit-tiny-800-84.6.pth",
               "pretrain/imagenet-1k/vit-small-300-73.3.pth"]
    monkeypatch.setattr("huggingface_hub.list_repo_files", lambda repo_id: listing)
    release_files.repo_files(w.hf_hub_id, offline=False)  # read once online; offline (HF_HUB_OFFLINE) from here on
    path, model = patchmix_checkpoint(tmp_path, momentum=False, **VIT_T2)
    _put_in_hf_cache(tmp_path / "hf", w.hf_hub_id, real, path)
    x = images(n=2)
    with torch.no_grad():
        ref = model.base_encoder.features(x)
    with caplog.at_level("INFO", logger="sslzoo"):
        assert relative_error(_features(entry, x, pretrained=True), ref) <= 1e-5
    assert f"the registry's {w.hf_filename} is not in hf-hub:{w.hf_hub_id}; using {real}" in caplog.text
    assert real in pins.first_use_pin(entry)["source"] and len(conversions) == 1
    # the README spells the ImageNet folder two ways; either matches
    assert release_files.match_release(listing, size="small", dataset="ImageNet-1K", epochs=300,
                                       layout="patchmix") == "pretrain/imagenet-1k/vit-small-300-73.3.pth"
    # no file for the entry at all: the README's name and the searched pattern are both in the message
    with pytest.raises(WeightsNotFoundError) as e:
        sslzoo.create_model("patchmix_vit_base_patch2_32.authors_cifar100", pretrained=True)
    assert "vit-base-800-75.7.pth" in str(e.value) and "pretrain/cifar100/vit-base-800-*.pth" in str(e.value)
