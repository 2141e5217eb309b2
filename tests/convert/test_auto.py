"""Every layout together: recognition, the CLI, idempotence, and refusals of mismatched or damaged files."""

from __future__ import annotations

import importlib
from functools import partial
from pathlib import Path

import pytest
import timm
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sslzoo import cli, files
from sslzoo.weights import local_hubs
from sslzoo.weights.convert import LAYOUTS, convert, convert_file, detect_layout, read_checkpoint
from sslzoo.errors import CheckpointFormatError

from .test_aps import aps_checkpoint
from .test_dino import dino_checkpoint
from .test_mocov3 import mocov3_checkpoint
from .test_patchmix import patchmix_checkpoint
from .upstream import images, perturb, relative_error

CHECKPOINTS = {
    "aps": aps_checkpoint,
    "patchmix": patchmix_checkpoint,
    "adclr": dino_checkpoint,
    "dino": partial(dino_checkpoint, adclr=False),
    "mocov3": mocov3_checkpoint,
}
TITLES = {"aps": "APS", "patchmix": "PatchMix", "adclr": "ADCLR/PQCL", "dino": "DINO", "mocov3": "MoCo v3"}
# one layout family: either name converts the other's files (an explicit --from is honoured when the tensors fit)
SAME_CONTAINER = {frozenset({"adclr", "dino"}), frozenset({"patchmix", "mocov3"})}


def _file(layout: str, tmp_path: Path) -> Path:
    return CHECKPOINTS[layout](tmp_path)[0]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_auto_recognises_every_layout_and_the_cli_converts_it(tmp_path, capsys, layout):
    path = _file(layout, tmp_path)
    assert detect_layout(read_checkpoint(path)) == layout
    out = tmp_path / "out"
    assert cli.main(["convert", "--from", "auto", str(path), str(out), "--num-heads", "4"]) == cli.EXIT_OK
    printed = capsys.readouterr().out
    assert f"{layout} checkpoint" in printed and "local-dir:" in printed
    assert (out / "model.safetensors").is_file() and (out / local_hubs.FULL_WEIGHTS_NAME).is_file()


@pytest.mark.parametrize("layout", LAYOUTS)
def test_conversion_is_idempotent_and_a_converted_file_is_recognised(tmp_path, layout):
    path = _file(layout, tmp_path)
    first = convert_file(path, tmp_path / "first", num_heads=4)
    written = {p.name: p.read_bytes() for p in first.iterdir()}
    assert set(written) == {"model.safetensors", "full.safetensors", "config.json", "README.md"}
    convert_file(path, first, num_heads=4)  # over its own output
    assert {p.name: p.read_bytes() for p in first.iterdir()} == written
    elsewhere = convert_file(path, tmp_path / "elsewhere", num_heads=4)  # only the folder's name may differ
    for name in ("model.safetensors", "full.safetensors"):
        a, b = files.load_checkpoint(first / name), files.load_checkpoint(elsewhere / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    converted_weights = first / "model.safetensors"
    assert detect_layout(read_checkpoint(converted_weights)) == "timm"
    with pytest.raises(CheckpointFormatError, match="nothing to convert"):
        convert(converted_weights)
    with pytest.raises(CheckpointFormatError, match="already converted"):
        convert(first)


@pytest.mark.parametrize(
    ("actual", "asked"),
    [(a, b) for a in LAYOUTS for b in LAYOUTS if a != b and frozenset({a, b}) not in SAME_CONTAINER],
)
def test_a_file_of_another_layout_is_refused_naming_what_it_is(tmp_path, capsys, actual, asked):
    path = _file(actual, tmp_path)
    with pytest.raises(CheckpointFormatError) as e:
        convert(path, asked, num_heads=4)
    message = str(e.value)
    assert f"not in the {TITLES[asked]} layout" in message and f"use --from {actual}" in message
    assert cli.main(["convert", "--from", asked, str(path), str(tmp_path / "out")]) == cli.EXIT_USAGE
    assert f"looks like the {TITLES[actual]} layout" in capsys.readouterr().err


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_truncated_file_is_refused(tmp_path, layout):
    path = _file(layout, tmp_path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointFormatError, match="truncated"):
        convert_file(path, tmp_path / "out", layout=layout)
    assert not (tmp_path / "out").exists()


def test_an_unknown_checkpoint_is_described(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"model": {"conv1.weight": torch.zeros(2, 3, 3, 3)}, "epoch": 3}, path)
    with pytest.raises(CheckpointFormatError, match=r"matches none of the known layouts.*'model', 'epoch'"):
        convert(path)
    with pytest.raises(CheckpointFormatError, match=r"not in the APS layout.*it is a dict with keys"):
        convert(path, "aps")


@settings(max_examples=8, deadline=None)
@given(
    width=st.sampled_from([32, 48, 64]),
    depth=st.integers(1, 3),
    patch=st.sampled_from([4, 8]),
    grid=st.integers(2, 4),
    heads=st.sampled_from([1, 2, 4]),
    mlp_ratio=st.sampled_from([2.0, 4.0]),
    qkv_bias=st.booleans(),
)
def test_architecture_is_read_back_from_the_tensors(tmp_path_factory, width, depth, patch, grid, heads, mlp_ratio, qkv_bias):
    args = dict(img_size=grid * patch, patch_size=patch, embed_dim=width, depth=depth, num_heads=heads,
                mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, num_classes=0)
    torch.manual_seed(0)
    vit = perturb(timm.create_model("vit_tiny_patch16_224", **args), 0).eval()
    sd = {f"base_encoder.{k}": v for k, v in vit.state_dict().items()}
    sd["predictor.4.running_mean"] = torch.zeros(4)
    converted = convert({"state_dict": sd}, "patchmix", num_heads=heads)
    model = converted.model
    block = model.blocks[0]
    got = (model.patch_embed.img_size[0], model.patch_embed.patch_size[0], model.embed_dim, len(model.blocks),
           block.attn.num_heads, block.mlp.fc1.out_features / width, block.attn.qkv.bias is not None)
    assert got == (grid * patch, patch, width, depth, heads, mlp_ratio, qkv_bias)
    x = images(grid * patch, n=2)
    with torch.no_grad():
        assert relative_error(model(x), vit(x)) <= 1e-5


def test_an_explicit_layout_of_the_same_family_is_honoured_with_a_notice(tmp_path, caplog):
    """--from patchmix on a file whose predictor lacks PatchMix's final BatchNorm (so it looks like MoCo v3)."""
    path = _file("mocov3", tmp_path)
    with caplog.at_level("WARNING", logger="sslzoo.weights.convert"):
        converted = convert(path, "patchmix", num_heads=4)
    assert converted.layout == "patchmix" and "looks like the" in caplog.text and "as asked" in caplog.text
    assert cli.main(["convert", "--from", "patchmix", str(path), str(tmp_path / "out")]) == cli.EXIT_OK


def test_the_layouts_table_and_the_converters_agree(tmp_path):
    """Each row's converter recognises that row's files as that row's layout; every name elsewhere is a row's name."""
    from sslzoo.weights import convert as package
    from sslzoo.registry import WEIGHTS, layouts

    assert package.LAYOUTS == layouts.LAYOUT_NAMES == tuple(CHECKPOINTS) and set(layouts.TITLES) == set(CHECKPOINTS)
    for row in layouts.LAYOUTS:
        module = importlib.import_module(f"sslzoo.weights.convert.{row.converter}")
        assert callable(module.recognise) and callable(module.convert) and module.EXPECTED
        (tmp_path / row.name).mkdir()
        assert module.recognise(read_checkpoint(_file(row.name, tmp_path / row.name))) == row.name
    pairs = [(a, b) for a in layouts.LAYOUT_NAMES for b in layouts.LAYOUT_NAMES if a != b]
    assert {frozenset(p) for p in pairs if layouts.same_family(*p)} == SAME_CONTAINER
    choices = next(a for a in cli.build_parser()._subparsers._group_actions[0].choices["convert"]._actions
                   if a.dest == "layout").choices
    assert choices == ["auto", *layouts.LAYOUT_NAMES]
    used = {w.convert_from for entries in WEIGHTS.values() for w in entries if w.convert_from}
    assert used and used <= set(layouts.LAYOUT_NAMES)
