"""The protocol table: every protocol runs through one path, and the commands are built from the table."""

import dataclasses
import inspect
import json

import pytest
import torch

import sslzoo
from sslzoo import cli
from sslzoo.eval import protocol_table
from sslzoo.eval.dense import dense_eval
from sslzoo.eval.protocol_table import PROTOCOLS, evaluate, find_protocol, report_lines
from sslzoo.eval.protocols import knn_eval, linear_eval
from sslzoo.validation import InvalidOptionError
from tests.eval.dense_fixtures import OracleExtractor, quadrants, write_layout


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SSLZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return sslzoo.create_model("dino_vit_tiny_patch4_32", depth=1)


@pytest.fixture(scope="module")
def oracle_folder(tmp_path_factory):
    perms = [[0, 1, 2, 3], [3, 2, 1, 0], [1, 0, 3, 2], [2, 3, 0, 1]]
    root = tmp_path_factory.mktemp("oracle")
    write_layout(root, {"train": [quadrants(32, p) for p in perms], "val": [quadrants(32, perms[1])]},
                 classes=["a", "b", "c", "d"])
    return root


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_each_protocol_names_a_runner_that_takes_its_settings(name):
    protocol = PROTOCOLS[name]
    runner = protocol_table._call(protocol.runner)
    inspect.signature(runner).bind(None, None, **protocol.settings)  # a setting the runner lacks raises TypeError
    assert protocol.command in {"knn", "linear", "dense"} and protocol.columns and protocol.metric


def test_evaluate_by_name_gives_what_the_runner_gives(tiny_model):
    for protocol, direct in (("knn:instdisc", lambda: knn_eval(tiny_model, preset="knn:instdisc", cache=False)),
                             ("linear:frozen", lambda: linear_eval(tiny_model, epochs=3, cache=False))):
        options = {"epochs": 3} if protocol == "linear:frozen" else {}
        by_name = sslzoo.evaluate(tiny_model, protocol=protocol, cache=False, **options)
        expected = direct()
        assert by_name["protocol"] == protocol
        for key in ("top1", "best", "sweep", "k", "temperature", "num_test"):
            assert by_name.get(key) == expected.get(key)
    assert evaluate(tiny_model, protocol="knn:instdisc", cache=False)["k"] == [200]  # the preset's own k


def test_the_dense_protocols_run_through_the_table_with_their_data_opened_first(oracle_folder):
    for name in ("dense:linear", "dense:nn"):
        by_table = evaluate(OracleExtractor(4), str(oracle_folder), protocol=name, cache=False, k=2, epochs=20,
                            progress=False)
        direct = dense_eval(OracleExtractor(4), str(oracle_folder), protocol=name, cache=False, k=2, epochs=20,
                            progress=False)
        assert by_table["protocol"] == name and by_table["miou"] == direct["miou"] == pytest.approx(100.0)
        assert PROTOCOLS[name].headline(by_table) == by_table["miou"]


def test_an_unknown_protocol_is_refused_with_the_closest_names():
    with pytest.raises(InvalidOptionError, match=r"Did you mean dense:linear"):
        find_protocol("dense:lin")
    with pytest.raises(InvalidOptionError, match=r"the protocols are knn:dino, knn:instdisc, linear:frozen"):
        evaluate("any", protocol="segmentation")


def test_reports_print_each_protocols_rows():
    knn = {"protocol": "knn:dino", "model": "m", "weights": "w", "data": "sample", "pool": "cls", "temperature": 0.07,
           "num_train": 500, "num_test": 100, "seconds": 1.0, "top1": {10: 41.0, 20: 37.5}}
    lines = report_lines(knn)
    assert "embedded CIFAR-10" in lines[0] and "pool cls" in lines[0] and lines[1].startswith("knn:dino: T=0.07")
    assert lines[-2:] == ["| 10 | 41.00 |", "| 20 | 37.50 |"] and PROTOCOLS["knn:dino"].headline(knn) == 37.5
    dense = {"protocol": "dense:nn", "model": "m", "weights": "w", "data": "d", "layers": 4, "size": 96, "patch": 8,
             "k": 30, "temperature": 0.02, "bank_patches": 9, "num_train": 2, "num_val": 1, "seconds": 1.0,
             "miou": 12.5, "pixel_acc": 50.0}
    lines = report_lines(dense)
    assert "layers 4 · 96 px (patch 8)" in lines[0] and "bank of 9 patches" in lines[1]
    assert lines[-1] == "| dense:nn | 12.50 | 50.00 |" and lines[-2] == "|---|---:|---:|"


def test_a_knn_protocol_added_to_the_table_is_a_choice_of_sslzoo_knn_with_its_settings(
        tiny_model, tmp_path, monkeypatch, capsys):
    added = dataclasses.replace(PROTOCOLS["knn:dino"], name="knn:three", settings={"preset": "knn:three"},
                                defaults={"k": (3,), "temperature": 0.5, "headline_k": 3})
    monkeypatch.setitem(PROTOCOLS, "knn:three", added)
    folder = sslzoo.save_pretrained(tiny_model, tmp_path / "model")
    out = tmp_path / "r.json"
    code = cli.main(["knn", "--model", f"local-dir:{folder}", "--preset", "knn:three", "--json", str(out),
                     "--no-cache"])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["protocol"] == "knn:three" and result["k"] == [3] and result["temperature"] == 0.5
    assert "| 3 |" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["knn", "--model", "m", "--preset", "knn:four"])
    assert exit_info.value.code == 2 and "knn:three" in capsys.readouterr().err
