"""``sslzoo dense`` on a generic-layout folder, and every bad input it refuses: exit 2, one line, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sslzoo import cli
from tests.eval.dense_fixtures import quadrants, stripes, write_layout

pytestmark = pytest.mark.usefixtures("isolated_hub")
TINY = ["--model", "dino_vit_tiny_patch4_32", "--random-init"]  # patch 4, 32 px


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    train = [quadrants(32, [(i + j) % 4 for j in range(4)]) for i in range(4)]
    val = [stripes(32, 32, [10, 21], [0, 1, 2]), quadrants(32, [3, 2, 1, 0])]
    return write_layout(tmp_path / "data", {"train": train, "val": val}, classes=["a", "b", "c", "d"])


@pytest.mark.parametrize("protocol", ["nn", "linear"])
def test_dense_command_on_a_generic_layout(layout: Path, tmp_path: Path, capsys, protocol: str) -> None:
    out, picture = tmp_path / "out" / "dense.json", tmp_path / "out" / "dense.png"
    code = cli.main(["dense", *TINY, "--data", str(layout), "--protocol", protocol, "--k", "3", "--epochs", "2",
                     "--layers", "4", "--json", str(out), "--picture", str(picture)])
    text = capsys.readouterr().out
    assert code == 0
    result = json.loads(out.read_text())
    assert result["protocol"] == f"dense:{protocol}" and result["layers"] == 4 and result["size"] == 32
    assert result["num_train"] == 4 and result["num_val"] == 2 and 0 <= result["miou"] <= 100
    assert result["scored_pixels"] == 2 * 32 * 32 and set(result["iou"]) == {"a", "b", "c", "d"}
    assert f"| dense:{protocol} | {result['miou']:.2f} |" in text
    with Image.open(picture) as im:  # two rows of image | truth | prediction, and a legend
        assert im.mode == "RGB" and im.height > 2 * 192 and im.width > 3 * 192


def _break(layout: Path, how: str) -> None:
    mask = layout / "masks" / "val" / "000.png"
    if how == "size":
        Image.fromarray(np.zeros((16, 16), np.uint8)).save(mask)
    elif how == "values":
        Image.fromarray(np.full((32, 32), 9, np.uint8)).save(mask)
    elif how == "unpaired":
        mask.unlink()
    elif how == "empty":
        for folder in (layout / "images" / "val", layout / "masks" / "val"):
            for p in folder.iterdir():
                p.unlink()
    elif how == "rgb":
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(mask)


CASES = [
    ("size", [], "is 16x16 but its image 000.png is 32x32"),
    ("values", [], "has values 9 outside the 4 classes 0-3 (255 = ignore)"),
    ("unpaired", [], "000.png has no mask"),
    ("empty", [], "has no images"),
    ("rgb", [], "is a RGB image; masks must be single-channel PNG index maps"),
    (None, ["--layers", "0"], "layers (--layers) must be at least 1, got 0."),
    (None, ["--layers", "13"], "layers (--layers) 13 exceeds the model's 12 blocks: use 1 to 12."),
    (None, ["--protocol", "nn", "--k", "0"], "k (--k) must be at least 1, got 0."),
    (None, ["--temperature", "0"], "temperature (--temperature) must be a finite number greater than 0"),
    (None, ["--size", "30"], "size (--size) 30 is not a multiple of the patch size 4: use 28 or 32."),
    (None, ["--protocol", "knn"], "Unknown dense protocol 'knn': use linear or nn"),
    (None, ["--epochs", "0"], "epochs (--epochs) must be at least 1, got 0."),
]


@pytest.mark.parametrize("breakage, extra, message", CASES, ids=[b or " ".join(e) for b, e, _ in CASES])
def test_bad_input_exits_2_with_one_line(layout: Path, tmp_path: Path, capsys, breakage, extra, message) -> None:
    if breakage:
        _break(layout, breakage)
    out = tmp_path / "out"
    code = cli.main(["dense", *TINY, "--data", str(layout), *extra, "--json", str(out / "r.json"),
                     "--picture", str(out / "p.png")])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert "Traceback" not in err and not out.exists()
