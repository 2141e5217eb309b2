"""Every bad input a user can type: exit status 2, one line saying what is wrong and what is allowed, no traceback.

One row per case; the commands run in-process (an uncaught exception would fail the test as surely as a traceback
on a terminal), and one row runs as a real process to check the exit status and stderr end to end.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sslzoo import cli
from training import pretrain, publish

TINY = "dino_vit_tiny_patch4_32"
# command, argv, the start of the first line of stderr (after "sslzoo CMD: error: ")
CASES = [
    ("knn", ["--k", "0"], "k (--k) must be at least 1, got 0."),
    ("knn", ["--k", "20", "-3"], "k (--k) must be at least 1, got -3."),
    ("knn", ["--temperature", "-0.07"], "temperature (--temperature) must be a finite number greater than 0"),
    ("knn", ["--temperature", "0"], "temperature (--temperature) must be a finite number greater than 0, got 0.0."),
    ("knn", ["--batch-size", "0"], "batch_size (--batch-size) must be at least 1, got 0."),
    ("linear", ["--epochs", "0"], "epochs (--epochs) must be at least 1, got 0."),
    ("linear", ["--lrs", "0.1", "0"], "lrs (--lrs) must be a finite number greater than 0, got 0.0."),
    ("linear", ["--batch-size", "0"], "batch_size (--batch-size) must be at least 1, got 0."),
    ("features", ["--batch-size", "0", "--data", "sample", "--output", "f.safetensors"],
     "batch_size (--batch-size) must be at least 1, got 0."),
    ("finetune", ["--epochs", "0"], "Invalid fine-tuning recipe: epochs must be at least 1, got 0."),
    ("finetune", ["--batch-size", "0"], "Invalid fine-tuning recipe: batch_size must be at least 1, got 0."),
    ("finetune", ["--lr", "-1"], "Invalid fine-tuning recipe: lr must be greater than 0, got -1.0"),
    ("finetune", ["--num-workers", "-1"], "num_workers (--num-workers) must be at least 0, got -1."),
    ("knn", ["--model", "aps_vit_tinyy_patch2_32"], "Unknown model 'aps_vit_tinyy_patch2_32'. Did you mean:"),
    ("knn", ["--model", "aps_vit_t"], "No pretrained weights could be found for 'aps_vit_t'"),
]
PRETRAIN_CASES = [
    (["--batch-size", "0"], "batch_size (--batch-size) must be at least 1, got 0."),
    (["--steps", "0"], "steps (--steps) must be at least 1, got 0."),
    (["--epochs", "0"], "epochs (--epochs) must be at least 1, got 0."),
    (["--lr", "0"], "optim.base_lr (--lr) must be a finite number greater than 0, got 0.0."),
    (["--set", "optim.base_lr=-1e-3"], "optim.base_lr (--lr) must be a finite number greater than 0, got -0.001."),
    (["--ckpt-every", "0"], "ckpt_every (--ckpt-every) must be at least 1, got 0."),
]


def _argv(command: str, extra: list[str], tmp_path: Path) -> list[str]:
    argv = [command]
    if "--model" not in extra:
        argv += ["--model", TINY]
    if command == "finetune":
        argv += ["--data", str(tmp_path / "data"), "--output", str(tmp_path / "out")]
    return argv + [str(tmp_path / a) if a.endswith(".safetensors") else a for a in extra]


@pytest.mark.usefixtures("isolated_hub")
@pytest.mark.parametrize("command, extra, first_line", CASES, ids=[f"{c} {' '.join(a)}" for c, a, _ in CASES])
def test_bad_options_exit_2_with_one_line(command, extra, first_line, tmp_path, capsys):
    code = cli.main(_argv(command, extra, tmp_path))
    err = capsys.readouterr().err
    assert code == 2
    assert err.splitlines()[0].startswith(f"sslzoo {command}: error: {first_line}"), err
    assert not (tmp_path / "out").exists() and not (tmp_path / "f.safetensors").exists()  # nothing half-written


@pytest.mark.parametrize("extra, first_line", PRETRAIN_CASES, ids=[" ".join(a) for a, _ in PRETRAIN_CASES])
def test_bad_pretrain_options_exit_2_with_one_line(extra, first_line, tmp_path, capsys):
    code = pretrain.main(["--method", "aps", "--profile", "quick", "--data", str(tmp_path / "data"),
                          "--output", str(tmp_path / "run"), *extra], prog="sslzoo pretrain")
    err = capsys.readouterr().err
    assert code == 2
    assert err.splitlines() == [f"sslzoo pretrain: error: {first_line}"]
    assert not (tmp_path / "run").exists()


# a wrong choice: one line naming the flag, the close names first, then every choice; no usage block
CHOICE_CASES = [
    (["pretrain", "--method", "nonsense"], "sslzoo pretrain: error: argument --method: invalid choice 'nonsense'"
     " (choose from mocov3, dino, aps, patchmix, ccrop, adclr)"),
    (["pretrain", "--method", "mocov"], "sslzoo pretrain: error: argument --method: invalid choice 'mocov'; did you"
     " mean 'mocov3'? (choose from mocov3, dino, aps, patchmix, ccrop, adclr)"),
    (["pretrain", "--data-mode", "bogus"], "sslzoo pretrain: error: argument --data-mode: invalid choice 'bogus'"
     " (choose from auto, memory, stream)"),
    (["pretrain", "--cpu-allocator", "bogus"], "sslzoo pretrain: error: argument --cpu-allocator: invalid choice"
     " 'bogus' (choose from retain, system)"),
    (["publish"], "sslzoo publish: error: the following arguments are required: RUN_DIR, --output"),
    (["knn", "--model", TINY, "--pool", "clss"], "sslzoo knn: error: argument --pool: invalid choice 'clss'; did you"
     " mean 'cls'? (choose from cls, avg, cls+avg, last4)"),
    (["finetune", "--model", TINY, "--data", "d", "--output", "o", "--recipe", "beat"], "sslzoo finetune: error:"
     " argument --recipe: invalid choice 'beat'; did you mean 'beit'? (choose from aps-cifar, patchmix-cifar, beit,"
     " adclr, default)"),
    (["lst"], "sslzoo: error: argument COMMAND: invalid choice 'lst'; did you mean 'list'? (choose from"),
]


@pytest.mark.parametrize("argv, line", CHOICE_CASES, ids=[" ".join(a[:3]) for a, _ in CHOICE_CASES])
def test_a_bad_choice_is_one_line_with_close_names(argv, line, capsys):
    with pytest.raises(SystemExit) as e:
        if argv[0] in ("pretrain", "publish"):  # the training programs, as `sslzoo pretrain` runs them
            (pretrain if argv[0] == "pretrain" else publish).main(argv[1:], prog=f"sslzoo {argv[0]}")
        else:
            cli.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.splitlines()) == 1 and err.startswith(line), err


def test_a_bad_option_as_a_real_process(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "sslzoo.cli", "knn", "--model", TINY, "--k", "0"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == ["sslzoo knn: error: k (--k) must be at least 1, got 0."]
    proc = subprocess.run([sys.executable, "-m", "sslzoo.cli", "pretrain", "--method", "aps", "--batch-size", "0"],
                          capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == ["sslzoo pretrain: error: batch_size (--batch-size) must be at least 1, got 0."]
