"""Two gloo processes give the loss and gradients of one process holding the same global batch."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from tests.training.test_pretrain import tiny_argv
from training import distributed, loop, pretrain
from training.config import resolve

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.distributed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_iteration(argv: list[str], out: Path, rank: int) -> None:
    """Build the run, take one training iteration, save the logged loss and this rank's gradients."""
    cfg = resolve(argv)
    tr = pretrain.build(cfg, distributed.init_distributed("cpu"))
    terms = loop.train_iteration(tr, next(tr.source.epoch_batches(0, 0)))
    grads = {n: p.grad.clone() for n, p in tr.method.named_parameters() if p.grad is not None}
    torch.save({"terms": terms, "grads": grads}, out / f"rank{rank}.pt")


def _worker(rank: int, world: int, port: int, argv: list[str], out: Path) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    try:
        one_iteration(argv, out, rank)
    finally:
        distributed.shutdown()


@pytest.mark.parametrize("method,mode", [("mocov3", "memory"), ("dino", "memory"), ("aps", "stream")])
def test_two_processes_match_one(method: str, mode: str, small_cifar, tmp_path: Path) -> None:
    # mocov3: momentum encoder, BatchNorm heads (global-batch BN), all-gathered keys; dino: centring, local crops;
    # aps streamed: each rank decodes and crops only its half, with the per-sample draws of one process
    argv = tiny_argv(method, small_cifar, tmp_path / "run", steps=1) + ["--data-mode", mode, "--workers", "0"]
    if method == "aps":  # one optimizer step per batch: later substeps would compare float noise amplified by AdamW
        argv += ["--set", "method_args.steps=1"]
    single = tmp_path / "single"
    single.mkdir()
    assert "WORLD_SIZE" not in os.environ
    one_iteration(argv, single, 0)
    multi = tmp_path / "multi"
    multi.mkdir()
    mp.spawn(_worker, args=(2, _free_port(), argv, multi), nprocs=2, join=True)
    ref = torch.load(single / "rank0.pt")
    ranks = [torch.load(multi / f"rank{r}.pt") for r in range(2)]
    for part in ranks:
        assert part["terms"]["loss"] == pytest.approx(ref["terms"]["loss"], rel=1e-5)
        assert part["grads"].keys() == ref["grads"].keys()
        scale = max(g.abs().max() for g in ref["grads"].values())
        for name, g in ref["grads"].items():
            # float32 sums in another order: compare against the tensor's scale, and for gradients that cancel to
            # noise (a LayerNorm bias under APS, about 1e-7) against the largest gradient's
            assert (part["grads"][name] - g).abs().max() <= 1e-4 * g.abs().max() + 1e-5 * scale, name


def _losses(run: Path) -> list[float]:
    with open(run / "log.csv", newline="") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


def test_cli_under_torchrun(small_cifar, tmp_path: Path) -> None:
    argv = tiny_argv("aps", small_cifar, tmp_path / "two", steps=2)
    env = dict(os.environ, PYTHONPATH=f"{REPO / 'src'}{os.pathsep}{REPO}", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port", str(_free_port()),
           "-m", "training.pretrain", *argv]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    one = pretrain.train(resolve(tiny_argv("aps", small_cifar, tmp_path / "one", steps=2)))
    assert _losses(tmp_path / "two") == pytest.approx(_losses(one.run_dir), rel=1e-4)
    assert len(_losses(tmp_path / "two")) == 2


def test_two_nodes_under_torchrun_match_one_process(small_cifar, tmp_path: Path) -> None:
    # two "nodes" on this machine: one torchrun agent each, one gloo process per node, c10d rendezvous on 127.0.0.1
    argv = tiny_argv("mocov3", small_cifar, tmp_path / "nodes", steps=2)
    env = dict(os.environ, PYTHONPATH=f"{REPO / 'src'}{os.pathsep}{REPO}", OMP_NUM_THREADS="1")
    port = _free_port()
    agents = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes=2", f"--node_rank={rank}",
                                "--nproc_per_node=1", "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}",
                                "--rdzv-id=sslzoo-test", "-m", "training.pretrain", *argv],
                               cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
              for rank in (0, 1)]
    for agent in agents:
        assert agent.wait(timeout=300) == 0, agent.stderr.read()[-3000:]
    one = pretrain.train(resolve(tiny_argv("mocov3", small_cifar, tmp_path / "one", steps=2)))
    assert _losses(tmp_path / "nodes") == pytest.approx(_losses(one.run_dir), rel=1e-4)
    assert len(_losses(tmp_path / "nodes")) == 2


def test_resuming_at_another_world_size_continues_the_same_run(small_cifar, tmp_path: Path) -> None:
    """One process trains 2 of 4 iterations; two processes resume it; the losses are those of one process for 4."""
    run = tmp_path / "run"
    argv = tiny_argv("mocov3", small_cifar, run, steps=4, extra=["--ckpt-every", "2"])
    pretrain.train(resolve(argv), stop_at=2)
    env = dict(os.environ, PYTHONPATH=f"{REPO / 'src'}{os.pathsep}{REPO}", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port", str(_free_port()),
           "-m", "training.pretrain", *argv, "--resume", "auto"]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    one = pretrain.train(resolve(tiny_argv("mocov3", small_cifar, tmp_path / "one", steps=4)))
    assert len(_losses(run)) == 4
    assert _losses(run) == pytest.approx(_losses(one.run_dir), rel=1e-4)
    # another global batch would change what an iteration and an epoch are: refused, in one line
    changed = [a if a != "16" else "32" for a in argv]
    done = subprocess.run([sys.executable, "-m", "training.pretrain", *changed, "--resume", "auto"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "global batch of 16" in done.stderr and "Traceback" not in done.stderr
