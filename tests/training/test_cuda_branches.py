"""The CUDA-only branches of training, reached on the CPU by injection: only the choice each branch makes is tested
(which device, which call in which order, which arguments), not CUDA itself.

- ``init_distributed``: the GPU is selected before the process group exists, and NCCL is bound to it (``device_id``),
  also in a one-GPU torchrun job;
- global BatchNorm: SyncBatchNorm on CUDA, converted before DDP wraps the method (DDP's buckets see the final
  modules), the frozen twins' BatchNorm still frozen; DDP on this process's GPU, without buffer broadcasts;
- the optimizer: fused AdamW on CUDA over the trainable parameters only;
- the CUDA RNG states of a checkpoint: restored as CPU byte tensors even when ``torch.load`` mapped them to the GPU,
  and only for the GPUs this machine has;
- streaming: pinned batches for a CUDA run (the loop copies them with ``non_blocking=True``), none for a CPU run.
"""

from __future__ import annotations

import torch
from torch import nn

from training import checkpoint, distributed
from training.checkpoint import rng_state, set_rng_state
from training.pretrain import build_optimizer

from tests.device.fake_cuda import CUDA, fake_cuda
from tests.device.tiny_methods import tiny_config, tiny_method

GPU1 = torch.device("cuda", 1)


def test_nccl_is_joined_on_the_selected_gpu(monkeypatch) -> None:
    calls = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(distributed, "resolve_device", lambda device, index: torch.device("cuda", index))
    monkeypatch.setattr(torch.cuda, "set_device", lambda dev: calls.append(("set_device", dev)))
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group",
                        lambda backend, **kw: calls.append(("init", backend, kw.get("device_id"), kw["rank"])))
    env = distributed.init_distributed("cuda")
    assert env.device == GPU1 and env.local_rank == 1
    assert calls == [("set_device", GPU1), ("init", "nccl", GPU1, 1)]


def test_a_one_gpu_torchrun_job_joins_nccl(monkeypatch) -> None:
    calls = []
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "gpu-check")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(distributed, "resolve_device", lambda device, index: torch.device("cuda", index))
    monkeypatch.setattr(torch.cuda, "set_device", lambda dev: None)
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group",
                        lambda backend, **kw: calls.append((backend, kw["world_size"], kw.get("device_id"))))
    assert distributed.init_distributed("cuda").world_size == 1
    assert calls == [("nccl", 1, torch.device("cuda", 0))]
    monkeypatch.setattr(distributed, "resolve_device", lambda device, index: torch.device("cpu"))
    distributed.init_distributed("cpu")
    assert len(calls) == 1  # a one-process CPU job stays without a process group


def test_gloo_on_the_cpu_takes_no_device(monkeypatch) -> None:
    calls = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda backend, **kw: calls.append((backend, kw)))
    distributed.init_distributed("cpu")
    assert calls[0][0] == "gloo" and "device_id" not in calls[0][1]


def test_sync_batchnorm_before_ddp_on_cuda(monkeypatch) -> None:
    method = tiny_method("mocov3", "arch_kwargs.depth=1")
    frozen = {id(p) for p in method.framework.momentum_projector.parameters()}
    distributed.convert_global_bn(method, GPU1)
    norms = [m for m in method.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert norms and all(type(m) is nn.SyncBatchNorm for m in norms)
    assert all(not p.requires_grad for p in method.framework.momentum_projector.parameters())
    assert {id(p) for p in method.framework.momentum_projector.parameters()} == frozen
    wrapped = {}
    monkeypatch.setattr(distributed, "is_distributed", lambda: True)
    monkeypatch.setattr(nn.parallel, "DistributedDataParallel",
                        lambda module, **kw: wrapped.update(module=module, **kw) or "ddp")
    env = distributed.DistEnv(rank=1, world_size=2, local_rank=1, device=GPU1)
    assert distributed.wrap_ddp(method, env) == "ddp"
    assert wrapped["module"] is method and wrapped["device_ids"] == [1] and wrapped["broadcast_buffers"] is False
    cpu_env = distributed.DistEnv(rank=1, world_size=2, local_rank=1, device=torch.device("cpu"))
    assert distributed.wrap_ddp(method, cpu_env) is method  # gloo: gradients averaged after the backward instead


def test_fused_adamw_on_cuda_over_trainable_parameters() -> None:
    method = tiny_method("dino", "arch_kwargs.depth=1")
    opt = tiny_config("dino")["optim"]
    with fake_cuda():
        method.to(CUDA)
        trainable = {id(p) for p in method.parameters() if p.requires_grad}
        fused = build_optimizer(method, opt, CUDA)
    assert fused.defaults["fused"] is True
    assert {id(p) for g in fused.param_groups for p in g["params"]} == trainable
    assert not build_optimizer(tiny_method("dino", "arch_kwargs.depth=1"), opt, torch.device("cpu")).defaults["fused"]


def test_cuda_rng_states_are_restored_from_the_cpu_and_per_present_gpu(monkeypatch) -> None:
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [torch.full((16,), i, dtype=torch.uint8)
                                                                   for i in range(2)])
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, index: restored.append((s.device.type, index)))
    state = rng_state()
    assert len(state["cuda"]) == 2
    with fake_cuda():  # what torch.load(map_location="cuda") gives: the states on the GPU
        state["cuda"] = [torch.empty(s.shape, dtype=s.dtype, device=CUDA) for s in state["cuda"]]
    set_rng_state(state)
    assert restored == [("cpu", 0)]  # saved on two GPUs, resumed on one


def test_streamed_batches_are_pinned_for_cuda_only(monkeypatch) -> None:
    from training.data import source

    made = []
    monkeypatch.setattr(source, "DataLoader", lambda *a, **kw: made.append(kw["pin_memory"]))
    monkeypatch.setattr(source, "StreamCrops", lambda *a, **kw: None)
    monkeypatch.setattr(source, "EpochBatchSampler", lambda batches: None)
    for device in (GPU1, torch.device("cpu")):
        source.StreamSource([], None, [], seed=0, guide=None, device=device, workers=2)
    assert made == [True, False]


def test_checkpoint_module_keeps_its_cuda_names() -> None:
    # the saved keys the restore reads (a rename would silently drop the CUDA states of old checkpoints)
    assert {"torch", "python", "python_version", "python_gauss"} <= set(checkpoint.rng_state())
