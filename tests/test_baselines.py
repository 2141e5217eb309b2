"""The baselines' ImageNet-1K entries, the URL download path and first-use pins, without a network.

The files are fabricated in the upstream layouts (DINO's timm-named backbone, as timm's safetensors copy and as the
official ``.pth``; MoCo v3's training checkpoint) and served by an HTTP server the test starts on 127.0.0.1, with
HTTP Range support and a switch that cuts the first response short; or put in a pre-filled Hugging Face cache read
with ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import threading
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

import sslzoo
from sslzoo import cli, registry
from sslzoo.weights import pins
from sslzoo.weights.download import download
from sslzoo.errors import ChecksumError, WeightsNotFoundError
from tests.convert.test_mocov3 import mocov3_checkpoint

pytestmark = pytest.mark.usefixtures("isolated_hub")
DINO = "dino_vit_small_patch16_224.authors_in1k"
DINO_ARCH = "dino_vit_small_patch16_224"


class _Files(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    cut_next: list[int] = []  # serve only this many bytes of the next response, then close
    ranges: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        data = self.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        if self.headers.get("Range"):
            self.ranges.append(self.headers["Range"])
            start = int(self.headers["Range"].split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        if self.cut_next:
            body = body[: self.cut_next.pop()]
            self.wfile.write(body)
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    _Files.files, _Files.cut_next, _Files.ranges = {}, [], []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Files
    httpd.shutdown()
    httpd.server_close()


def test_a_download_is_resumed_after_an_interruption_and_is_atomic(server, tmp_path: Path) -> None:
    base, files = server
    data = bytes(range(256)) * 4000
    files.files["/f.bin"] = data
    files.cut_next.append(300_000)
    dest = tmp_path / "f.bin"
    with pytest.raises(WeightsNotFoundError, match="300000 bytes are kept"):
        download(f"{base}/f.bin", dest, progress=False)
    assert not dest.exists() and (tmp_path / "f.bin.partial").stat().st_size == 300_000
    assert download(f"{base}/f.bin", dest, progress=False).read_bytes() == data
    assert files.ranges == ["bytes=300000-"] and not (tmp_path / "f.bin.partial").exists()
    with pytest.raises(WeightsNotFoundError, match="HTTP 404"):
        download(f"{base}/missing.bin", tmp_path / "m.bin", progress=False)


def _dino_backbone(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    vit = timm.create_model("vit_small_patch16_224", num_classes=0)
    with torch.no_grad():
        for p in vit.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return {k: v.contiguous() for k, v in vit.state_dict().items()}


def _timm_reference(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    vit = timm.create_model("vit_small_patch16_224", num_classes=0)  # what vit_small_patch16_224.dino builds
    vit.load_state_dict(sd)
    with torch.no_grad():
        return vit.eval()(x)


def _out(model, x):
    with torch.no_grad():
        return model.eval()(x)


def _entry(arch: str, **changes) -> registry.Weights:
    return dataclasses.replace(registry.resolve(f"{arch}.authors_in1k").weights, **changes)


def test_dino_loads_from_the_official_url_is_pinned_and_a_changed_file_is_refused(server, monkeypatch,
                                                                                    tmp_path: Path) -> None:
    base, files = server
    sd = _dino_backbone()
    torch.save(sd, tmp_path / "dino.pth")
    files.files["/dino/dino_deitsmall16_pretrain.pth"] = (tmp_path / "dino.pth").read_bytes()
    monkeypatch.delenv("HF_HUB_OFFLINE")
    # the official .pth as the only source (timm's Hugging Face copy would need the network)
    monkeypatch.setitem(registry.WEIGHTS, DINO_ARCH, (_entry(DINO_ARCH, hf_hub_id=None, hf_filename=None,
                                                             url=f"{base}/dino/dino_deitsmall16_pretrain.pth"),))
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    model = sslzoo.create_model(DINO, pretrained=True)
    assert torch.allclose(_out(model, x), _timm_reference(sd, x), atol=1e-5)
    pin = pins.first_use_pin(DINO)
    assert pin["sha256"] == model.sslzoo_cfg["sha256"] and pin["source"].startswith(base)

    # upstream changes the file: the cached copy is replaced by another one, which is refused, and removed
    download_dir = tmp_path / "cache" / "downloads"
    (cached,) = download_dir.iterdir()
    torch.save(_dino_backbone(seed=1), cached)
    with pytest.raises(ChecksumError, match=f"pinned to {pin['sha256']}.*sslzoo verify --repin {DINO}"):
        sslzoo.create_model(DINO, pretrained=True)
    assert not cached.exists()
    # re-pinning on purpose fetches the (now changed) upstream file and pins it
    torch.save(_dino_backbone(seed=2), tmp_path / "dino2.pth")
    files.files["/dino/dino_deitsmall16_pretrain.pth"] = (tmp_path / "dino2.pth").read_bytes()
    assert cli.main(["verify", "--repin", DINO]) == cli.EXIT_OK
    assert pins.first_use_pin(DINO)["sha256"] != pin["sha256"]
    assert sslzoo.create_model(DINO, pretrained=True) is not None


def test_a_download_with_a_wrong_published_hash_is_refused_and_removed(server, monkeypatch, tmp_path: Path) -> None:
    base, files = server
    torch.save(_dino_backbone(), tmp_path / "dino.pth")
    files.files["/d.pth"] = (tmp_path / "dino.pth").read_bytes()
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setitem(registry.WEIGHTS, DINO_ARCH, (_entry(DINO_ARCH, hf_hub_id=None, url=f"{base}/d.pth",
                                                             sha256="0" * 64),))
    with pytest.raises(ChecksumError, match="The downloaded file was removed"):
        sslzoo.create_model(DINO, pretrained=True)
    assert not any((tmp_path / "cache" / "downloads").iterdir())
    assert pins.first_use_pin(DINO) is None  # a refused file is never pinned


def test_dino_loads_offline_from_a_prefilled_hugging_face_cache(tmp_path: Path, capsys) -> None:
    sd = _dino_backbone()
    commit = "89abcdef0123456789abcdef0123456789abcdef"
    folder = tmp_path / "hf" / "models--timm--vit_small_patch16_224.dino"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    (folder / "snapshots" / commit).mkdir(parents=True)
    save_file(sd, folder / "snapshots" / commit / "model.safetensors")
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    model = sslzoo.create_model(DINO, pretrained=True)
    assert torch.allclose(_out(model, x), _timm_reference(sd, x), atol=1e-5)
    assert pins.first_use_pin(DINO)["revision"] == commit
    assert cli.main(["info", DINO]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "pinned on first use" in out and commit in out and "knn:dino" in out and "(reported)" in out
    assert "apache-2.0" in out


def test_mocov3_loads_from_its_url_and_is_converted(server, monkeypatch, tmp_path: Path) -> None:
    base, files = server
    path, model = mocov3_checkpoint(tmp_path, img_size=224, patch_size=16, embed_dim=384, depth=12, num_heads=12)
    files.files["/moco-v3/vit-s-300ep/vit-s-300ep.pth.tar"] = path.read_bytes()
    monkeypatch.delenv("HF_HUB_OFFLINE")
    arch = "mocov3_vit_small_patch16_224"
    monkeypatch.setitem(registry.WEIGHTS, arch, (_entry(arch, url=f"{base}/moco-v3/vit-s-300ep/vit-s-300ep.pth.tar"),))
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    loaded = sslzoo.create_model(f"{arch}.authors_in1k", pretrained=True)
    with torch.no_grad():
        assert torch.allclose(loaded.eval()(x), model.base_encoder.features(x), atol=1e-4)


def test_the_in1k_listing_shows_sources_figures_and_licences(capsys) -> None:
    assert cli.main(["list", "--pretrained", "*in1k*", "--details"]) == cli.EXIT_OK
    out = capsys.readouterr().out
    for expected in ("dino_vit_small_patch8_224.authors_in1k", "timm/vit_small_patch8_224.dino", "78.3",
                     "mocov3_vit_base_patch16_224.authors_in1k", "vit-b-300ep.pth.tar", "76.7", "cc-by-nc-4.0"):
        assert expected in out, expected
    assert json.loads(json.dumps(registry.model_info(DINO)))["weights"]["url"].endswith("dino_deitsmall16_pretrain.pth")
