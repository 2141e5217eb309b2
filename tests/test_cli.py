import json
import subprocess
import sys

import pytest
from safetensors.torch import save_file

import sslzoo
from sslzoo import cli, files, registry

ARCH = "dino_vit_tiny_patch4_32"


pytestmark = pytest.mark.usefixtures("isolated_hub")


def run(capsys, *argv):
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("argv", [["--help"], ["list", "--help"], ["info", "--help"], ["download", "--help"],
                                  ["verify", "--help"]])
def test_help_everywhere(argv, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 0
    assert "usage: sslzoo" in capsys.readouterr().out


def test_list_and_info(capsys):
    code, out, _ = run(capsys, "list", "aps_vit_tiny*")
    assert code == 0 and out.split() == ["aps_vit_tiny_patch16_224", "aps_vit_tiny_patch2_32", "aps_vit_tiny_patch4_32",
                                         "aps_vit_tiny_patch8_224"]
    code, out, _ = run(capsys, "list", "--aliases", "--json", "aps_vit_?")
    assert code == 0 and json.loads(out) == ["aps_vit_b", "aps_vit_s", "aps_vit_t"]
    code, _, err = run(capsys, "list", "zzz*")
    assert code == 1 and "No models match" in err
    code, out, _ = run(capsys, "info", "adclr_vit_s")
    assert code == 0 and "adclr_vit_small_patch2_32" in out and "pos_embed=sincos" in out
    code, out, _ = run(capsys, "info", "--json", "aps_vit_t")
    assert code == 0 and json.loads(out)["norm_eps"] == 1e-5


def test_user_errors_exit_2_with_a_message_and_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "sslzoo.cli", "info", "aps_vit_tinyy_patch2_32"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Did you mean" in proc.stderr and "aps_vit_tiny_patch2_32" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "sslzoo.cli", "download", "aps_vit_b"], capture_output=True, text=True)
    assert proc.returncode == 2 and "pretrained_file=" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "sslzoo.cli", "bogus"], capture_output=True, text=True)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def test_download_and_verify(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "env_hub" / f"{ARCH}.test"
    folder.mkdir(parents=True)
    save_file(sslzoo.create_model(ARCH).state_dict(), folder / "model.safetensors")
    pin = files.sha256_file(folder / "model.safetensors")
    w = registry.Weights(tag="test", description="d", pretrain_data="CIFAR-10", sha256=pin)
    monkeypatch.setitem(registry.WEIGHTS, ARCH, (w,))

    code, out, _ = run(capsys, "download", f"{ARCH}.test")
    assert code == 0 and str(folder / "model.safetensors") in out
    code, out, _ = run(capsys, "verify")
    assert code == 0 and out.strip().endswith("OK")
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-3] ^= 1
    (folder / "model.safetensors").write_bytes(bytes(data))
    code, out, _ = run(capsys, "verify", ARCH)
    assert code == 1 and "MISMATCH" in out and pin in out
    code, _, err = run(capsys, "download", ARCH)
    assert code == 2 and pin in err


def _heavy_imports_of(argv: list[str]) -> list[str]:
    """stderr of ``sslzoo ARGV`` in a fresh process, then a last line: its exit status and the heavy modules loaded."""
    script = (
        "import sys\nfrom sslzoo import cli\ntry:\n    code = cli.main(sys.argv[1:])\nexcept SystemExit as e:\n"
        "    code = e.code\nprint(code, sorted(m for m in ('torch', 'timm', 'faiss', 'numpy', 'safetensors', 'PIL')"
        " if m in sys.modules), file=sys.stderr)"
    )
    proc = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, timeout=120)
    return proc.stderr.strip().splitlines()


@pytest.mark.parametrize("argv", [["--help"], ["list"], ["info", "aps_vit_t"], ["knn", "--help"], ["finetune", "--help"],
                                  ["dense", "--help"]])
def test_help_list_and_info_start_without_torch(argv):
    # torch, timm and faiss cost seconds of start-up; these commands need none of them
    lines = _heavy_imports_of(argv)
    assert lines[-1] == "0 []", lines


@pytest.mark.parametrize("argv", [
    ["knn", "--model", ARCH, "--k", "0"],
    ["knn", "--model", ARCH, "--temperature", "0"],
    ["linear", "--model", ARCH, "--epochs", "0"],
    ["features", "--model", ARCH, "--data", "sample", "--output", "f.safetensors", "--batch-size", "0"],
    ["finetune", "--model", ARCH, "--data", "d", "--output", "o", "--epochs", "0"],
    ["finetune", "--model", ARCH, "--data", "d", "--output", "o", "--num-workers", "-1"],
], ids=lambda argv: " ".join(argv[:1] + argv[-2:]))
def test_bad_options_are_refused_before_torch_is_imported(argv):
    # the README: options are checked before any work; torch, timm and faiss alone take seconds to import
    lines = _heavy_imports_of(argv)
    assert len(lines) == 2 and lines[0].startswith(f"sslzoo {argv[0]}: error: "), lines
    assert lines[1] == "2 []", lines
