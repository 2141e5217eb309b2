"""Mixed precision exercised on the CPU: CPU runs are fp32 (bf16 matmuls are slow there), so the bf16 and fp16 paths
that GPU runs take are forced here on tiny models.

- every method, two iterations of ``loop.train_iteration`` under bf16 autocast: finite fp32 losses, fp32 master
  weights and gradients, moved weights;
- the loss terms that must stay fp32 under autocast (InfoNCE logits, DINO's temperatures and centre) equal their
  fp32 computation;
- the loop's fp16 branch with a ``GradScaler``: a step with overflowing gradients is skipped and the scale halves,
  a finite one unscales before clipping and steps.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from training import loop
from training.objectives.dino import Center, cross_entropy
from training.objectives.infonce import hard_targets, info_nce

from tests.device.tiny_methods import METHOD_NAMES, random_batch, tiny_trainer

CPU = torch.device("cpu")


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_bf16_iterations_keep_fp32_weights_and_finite_losses(name: str, tmp_path: Path) -> None:
    tr = tiny_trainer(name, tmp_path, CPU, dtype=torch.bfloat16)
    before = {n: p.detach().clone() for n, p in tr.method.named_parameters() if p.requires_grad}
    for it in range(2):
        terms = loop.train_iteration(tr, random_batch(tr, it))
        tr.iteration += 1
        assert all(torch.isfinite(torch.tensor(v)) for k, v in terms.items() if k != "momentum"), terms
    params = dict(tr.method.named_parameters())
    assert all(p.dtype == torch.float32 for p in params.values())
    assert all(b.dtype == torch.float32 for b in tr.method.buffers() if b.is_floating_point())
    grads = [p.grad for p in params.values() if p.grad is not None]
    assert grads and all(g.dtype == torch.float32 for g in grads)
    assert any(not torch.equal(params[n], b) for n, b in before.items())


def test_infonce_logits_are_fp32_under_autocast() -> None:
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
    soft = torch.softmax(torch.randn(8, 8, generator=g), dim=1)
    for targets in (hard_targets(8), soft):
        exact = info_nce(q, k, targets, temperature=0.2, scale=0.4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = info_nce(q.bfloat16(), k.bfloat16(), targets, temperature=0.2, scale=0.4)
        assert mixed.dtype == torch.float32
        # bf16 inputs lose their low bits, nothing more: a bf16 matmul would be off by about 1e-2
        expected = info_nce(q.bfloat16().float(), k.bfloat16().float(), targets, temperature=0.2, scale=0.4)
        torch.testing.assert_close(mixed, expected, rtol=1e-6, atol=1e-6)
        assert torch.isfinite(exact)


def test_dino_temperatures_and_centre_are_fp32_under_autocast() -> None:
    g = torch.Generator().manual_seed(0)
    teacher, student = torch.randn(6, 32, generator=g) * 5, torch.randn(6, 32, generator=g) * 5
    center = Center(32)
    center.update([torch.randn(6, 32, generator=g)])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        probs = center.teacher_probs(teacher.bfloat16(), 0.04)
        loss = cross_entropy(probs, student.bfloat16(), 0.1)
        center.update([teacher.bfloat16()])
    assert probs.dtype == loss.dtype == center.center.dtype == torch.float32
    t, s = teacher.bfloat16().float(), student.bfloat16().float()
    old = (center.center - 0.1 * t.mean(0, keepdim=True)) / 0.9
    exact_probs = F.softmax((t - old) / 0.04, dim=-1)
    torch.testing.assert_close(probs, exact_probs, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss, -(exact_probs * F.log_softmax(s / 0.1, dim=-1)).sum(-1).mean(), rtol=1e-5,
                               atol=1e-6)


def test_fp16_grad_scaler_skips_overflow_and_steps_otherwise(tmp_path: Path) -> None:
    # 2**127 overflows any fp16 gradient (and fp32 after scaling): the step must be skipped and the scale halved
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**127, growth_interval=1)
    tr = tiny_trainer("mocov3", tmp_path, CPU, dtype=torch.float16, scaler=scaler, extra=("optim.clip_grad=1.0",))
    online = [p for p in tr.method.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in online]
    loop.train_iteration(tr, random_batch(tr, 0))
    assert all(torch.equal(p, b) for p, b in zip(online, before)), "a step with inf gradients was taken"
    assert scaler.get_scale() == 2.0**126
    scaler.update(2.0**8)
    loop.train_iteration(tr, random_batch(tr, 1))
    assert any(not torch.equal(p, b) for p, b in zip(online, before))
    assert scaler.get_scale() == 2.0**9  # a finite step grows the scale (growth_interval 1)
    # the gradients the optimizer saw were unscaled and clipped to the global norm 1
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in online if p.grad is not None]))
    assert norm <= 1.0 + 1e-4
