"""The weight sources: one list, in resolution order, that locating, the cached copies and the message all walk."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pytest

from sslzoo import registry
from sslzoo.errors import WeightsNotFoundError
from sslzoo.weights import locate, sources

ARCH = "dino_vit_tiny_patch4_32"


@pytest.fixture(autouse=True)
def _isolated(isolated_hub):
    return isolated_hub


def _entry(monkeypatch, **kw) -> registry.Resolved:
    fields = dict(tag="test", description="d", pretrain_data="CIFAR-10", hf_hub_id="sslzoo-test/tiny")
    monkeypatch.setitem(registry.WEIGHTS, ARCH, (registry.Weights(**dict(fields, **kw)),))
    return registry.resolve(f"{ARCH}.test")


def _kinds(resolved) -> list[str]:
    return [type(s).__name__ for s in sources.sources_for(resolved)]


def test_each_kind_of_entry_lists_its_sources_in_resolution_order(monkeypatch, isolated_hub):
    hubs = ["LocalHub", "LocalHub"]  # $SSLZOO_HUB, then the shipped hub
    assert _kinds(_entry(monkeypatch)) == [*hubs, "HuggingFaceFile"]
    assert _kinds(_entry(monkeypatch, url="http://127.0.0.1:9/w.pth")) == [*hubs, "HuggingFaceFile", "Url"]
    release = dict(convert_from="patchmix", pretrain_epochs=800)
    assert _kinds(_entry(monkeypatch, hf_filename="pretrain/x.pth", **release)) == [
        *hubs, "HuggingFaceFile", "HuggingFaceListing"]  # a README's name may be wrong: the listing next
    assert _kinds(_entry(monkeypatch, **release)) == [*hubs, "HuggingFaceListing"]  # the README names no file
    assert _kinds(_entry(monkeypatch, hf_hub_id=None, url="http://127.0.0.1:9/w.pth")) == [*hubs, "Url"]
    local = sources.sources_for(_entry(monkeypatch, hub_dir="elsewhere"))[0]
    assert local.path == isolated_hub / "env_hub" / "elsewhere" / "model.safetensors"


class _Shelf(sources.Source):
    """A new kind of source, written only as a class: a file on a shelf, or a miss that says where it looked."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def locate(self) -> Optional[sources.Found]:
        if self.path.is_file():
            return self.path, "the shelf"
        raise WeightsNotFoundError(f"not on the shelf at {self.path}")

    def cached(self) -> Optional[Path]:
        return self.path if self.path.is_file() else None

    def tried(self, error: WeightsNotFoundError) -> str:
        return f"{error} (a test source)"


class _Silent(sources.Source):
    def locate(self) -> Optional[sources.Found]:
        return None  # nothing here and nothing to say


def test_locating_the_cached_copies_and_the_message_walk_the_one_list(monkeypatch, tmp_path):
    resolved = _entry(monkeypatch)
    shelf = tmp_path / "shelf" / "w.safetensors"
    monkeypatch.setattr(locate, "sources_for", lambda r: [_Silent(), _Shelf(shelf)])
    with pytest.raises(WeightsNotFoundError) as e:
        locate.locate_registered(resolved)
    looked = str(e.value).split("Looked in:\n", 1)[1].split("\nWhat you can do:", 1)[0]
    assert looked == f"  - not on the shelf at {shelf} (a test source)"
    assert locate.cached_copies(resolved) == []
    shelf.parent.mkdir()
    shelf.write_bytes(b"w")
    assert locate.locate_registered(resolved) == (shelf, "the shelf")
    assert locate.cached_copies(resolved) == [shelf]


def test_the_message_names_the_local_hub_folder_of_the_entry(monkeypatch):
    resolved = _entry(monkeypatch, hub_dir="my-folder")
    assert "$SSLZOO_HUB/my-folder/" in locate.no_weights_message(resolved, [])
    release = _entry(monkeypatch, convert_from="aps", hub_dir=None)
    assert f"$SSLZOO_HUB/{release.full_name}/" in locate.no_weights_message(release, [])
