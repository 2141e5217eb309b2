"""The evaluation protocols end to end, through the library and the ``sslzoo`` command."""

import json
import shutil
import subprocess
import sys

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import sslzoo
from sslzoo import cli
from sslzoo.data import open_dataset
from sslzoo.eval.protocols import knn_eval, linear_eval

from .test_knn import naive_dino_knn


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SSLZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def small_cifar(cifar10_root, tmp_path_factory):
    """Real CIFAR-10 (JPEG q75) ImageFolder: 20 train and 6 test images per class."""
    out = tmp_path_factory.mktemp("small_cifar")
    for split, n in (("train", 20), ("test", 6)):
        for cls in sorted(p.name for p in (cifar10_root / split).iterdir()):
            (out / split / cls).mkdir(parents=True)
            for f in sorted((cifar10_root / split / cls).iterdir())[:n]:
                shutil.copy(f, out / split / cls / f.name)
    return out


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = sslzoo.create_model("dino_vit_tiny_patch4_32", depth=3)
    return sslzoo.save_pretrained(model, tmp_path_factory.mktemp("m") / "model")


def test_real_cifar_imagefolder_to_knn_and_linear_probe(small_cifar, model_dir):
    name = f"local-dir:{model_dir}"
    result = knn_eval(name, str(small_cifar), k=(1, 20), cache=False)
    assert result["num_train"] == 200 and result["num_test"] == 60
    model = sslzoo.create_model(name)
    train_x, train_y = sslzoo.extract_features(model, open_dataset(small_cifar, "train"), progress=False)
    test_x, test_y = sslzoo.extract_features(model, open_dataset(small_cifar, "test"), progress=False)
    for k in (1, 20):
        expected = naive_dino_knn(train_x, train_y, test_x, k, 0.07, 10)
        assert result["top1"][k] == pytest.approx(100 * (expected == test_y).float().mean().item())
    probe = linear_eval(name, str(small_cifar), epochs=5, cache=False)
    assert probe["protocol"] == "linear:frozen" and probe["num_test"] == 60 and len(probe["sweep"]) == 8
    # the whole path equals the probe on the features computed by hand (same seed, same numbers)
    direct = sslzoo.linear_probe(train_x, train_y, test_x, test_y, epochs=5)
    assert probe["best"] == direct["best"] and probe["sweep"] == direct["sweep"]


def test_grayscale_images_are_evaluated_as_replicated_rgb(small_cifar, model_dir, tmp_path):
    gray, rgb_of_gray = tmp_path / "gray", tmp_path / "rgb"
    for src in small_cifar.rglob("*.jpg"):
        rel = src.relative_to(small_cifar)
        for root in (gray, rgb_of_gray):
            (root / rel.parent).mkdir(parents=True, exist_ok=True)
        img = Image.open(src).convert("L")
        img.save(gray / rel.with_suffix(".png"))
        img.convert("RGB").save(rgb_of_gray / rel.with_suffix(".png"))
    name = f"local-dir:{model_dir}"
    a = knn_eval(name, str(gray), cache=False)
    b = knn_eval(name, str(rgb_of_gray), cache=False)
    assert a["top1"] == b["top1"] and a["num_train"] == 200


def test_cli_knn_linear_features(small_cifar, model_dir, tmp_path, capsys):
    name = f"local-dir:{model_dir}"
    assert cli.main(["knn", "--model", name, "--data", str(small_cifar), "--k", "5", "20",
                     "--json", str(tmp_path / "knn.json")]) == 0
    out = capsys.readouterr().out
    result = json.loads((tmp_path / "knn.json").read_text())
    assert set(result["top1"]) == {"5", "20"} and f"| 20 | {result['top1']['20']:.2f} |" in out
    assert cli.main(["linear", "--model", name, "--data", str(small_cifar), "--epochs", "3",
                     "--json", str(tmp_path / "lin.json")]) == 0
    assert json.loads((tmp_path / "lin.json").read_text())["protocol"] == "linear:frozen"
    assert cli.main(["features", "--model", name, "--data", str(small_cifar), "--output", str(tmp_path / "f.safetensors"),
                     "--pool", "cls+avg"]) == 0
    feats = load_file(tmp_path / "f.safetensors")
    assert feats["train.features"].shape == (200, 384) and feats["test.labels"].shape == (60,)


def test_main_job_on_the_embedded_sample(capsys):
    assert cli.main(["knn", "--model", "aps_vit_tiny_patch4_32", "--k", "20"]) == 0
    captured = capsys.readouterr()
    assert "embedded CIFAR-10 (JPEG q75) sample" in captured.out and "random init" in captured.err
    assert "500 train / 100 test" in captured.out


def test_cli_user_errors(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "sslzoo.cli", "knn", "--model", "aps_vit_tiny_patch4_32",
                           "--data", str(tmp_path / "missing")], capture_output=True, text=True)
    assert proc.returncode == 2 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "sslzoo.cli", "knn", "--model", "vit_tiny_patch16_224"],
                          capture_output=True, text=True, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2 and "--random-init" in proc.stderr and "Traceback" not in proc.stderr


def _one_class_folder(root, per_split=(4, 2)):
    for split, n in zip(("train", "test"), per_split):
        (root / split / "cat").mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (32, 32), (40 * i, 90, 200)).save(root / split / "cat" / f"{i}.png")
    return root


@pytest.mark.parametrize("command", ["knn", "linear"])
def test_a_single_class_is_refused_not_scored_100(command, model_dir, tmp_path, capsys):
    data = _one_class_folder(tmp_path / "one")
    code = cli.main([command, "--model", f"local-dir:{model_dir}", "--data", str(data), "--epochs" if command ==
                     "linear" else "--k", "1"])
    err = capsys.readouterr()
    assert code == 2 and "100.00" not in err.out
    assert err.err.splitlines()[-1] == (f"sslzoo {command}: error: {data} has 1 class with training images (cat): an"
                                        " accuracy needs at least two classes (one folder per class under train/"
                                        " and test/).")  # the last line: a decoding notice may come first


def test_test_classes_without_training_images_are_refused():
    from sslzoo.data import ClassesError, check_classes

    check_classes(torch.tensor([0, 1, 1]), [1, 0], ["a", "b", "c"], "d")  # fine
    with pytest.raises(ClassesError, match="the test classes c have no training images"):
        check_classes(torch.tensor([0, 1, 1]), [1, 2], ["a", "b", "c"], "d")
    with pytest.raises(ClassesError, match="d has 1 class with training images \\(b\\)"):
        check_classes([1, 1], [1], ["a", "b"], "d")


def test_k_larger_than_the_bank_is_clamped_with_a_notice(model_dir, caplog, capsys, tmp_path):
    name = f"local-dir:{model_dir}"
    with caplog.at_level("WARNING", logger="sslzoo.eval.knn"):
        assert cli.main(["knn", "--model", name, "--k", "20", "100000", "--json", str(tmp_path / "knn.json")]) == 0
    assert "k=100000 exceeds the bank of 500 train features; using k=500" in caplog.text
    result = json.loads((tmp_path / "knn.json").read_text())
    assert result["k"] == [20, 500] and set(result["top1"]) == {"20", "500"}
    assert "| 500 |" in capsys.readouterr().out and "100000" not in json.dumps(result["top1"])


def test_features_file_records_what_the_features_depend_on(model_dir, tmp_path):
    from safetensors import safe_open

    from sslzoo.data import eval_transform
    from sslzoo.eval.features import weights_sha256

    name = f"local-dir:{model_dir}"
    out = tmp_path / "f.safetensors"
    assert cli.main(["features", "--model", name, "--data", "sample", "--output", str(out), "--splits", "test"]) == 0
    with safe_open(str(out), framework="pt") as f:
        meta = f.metadata()
    model = sslzoo.create_model(name)
    file_sha = json.loads((model_dir / "config.json").read_text())["sslzoo"]["sha256"]
    assert meta["model"] == name and file_sha[:12] in meta["weights_source"]
    assert meta["weights_file_sha256"] == file_sha and meta["state_dict_sha256"] == weights_sha256(model)
    assert "weights" not in meta and "weights_sha256" not in meta  # two unlabelled hashes no more
    assert meta["transform"] == eval_transform(model).describe() and meta["splits"] == "test"
