"""On a real GPU (skipped without one): two bf16 iterations of every method through ``loop.train_iteration``, with a
CUDA generator for the batch-level draws, a real backward and AdamW; what the fake-CUDA tests cannot run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from training import loop

from .tiny_methods import METHOD_NAMES, random_batch, tiny_trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_bf16_iterations_on_the_gpu(name: str, tmp_path: Path) -> None:
    device = torch.device("cuda", torch.cuda.current_device())
    tr = tiny_trainer(name, tmp_path, device, dtype=torch.bfloat16)
    before = {n: p.detach().clone() for n, p in tr.method.named_parameters() if p.requires_grad}
    for it in range(2):
        terms = loop.train_iteration(tr, random_batch(tr, it))
        tr.iteration += 1
        assert torch.isfinite(torch.tensor(terms["loss"]))
    params = dict(tr.method.named_parameters())
    assert all(p.device.type == "cuda" and p.dtype == torch.float32 for p in params.values())
    assert any(not torch.equal(params[n], b) for n, b in before.items())
