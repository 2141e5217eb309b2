"""Objectives and schedules against naive references."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from training.objectives.dino import Center, cross_entropy, dino_loss, teacher_temperature
from training.objectives.infonce import hard_targets, info_nce
from training.schedules import cosine, ema_momentum, param_groups, warmup_cosine

SETTINGS = settings(max_examples=25, deadline=None)


def naive_info_nce(q, k, target_rows, tau):
    """-sum_j y_ij log softmax_j(cos(q_i, k_j) / tau), averaged, with explicit loops."""
    total = 0.0
    for i in range(q.shape[0]):
        sims = [float(torch.dot(q[i], k[j]) / (q[i].norm() * k[j].norm())) / tau for j in range(k.shape[0])]
        log_z = math.log(sum(math.exp(s) for s in sims))
        total += -sum(target_rows[i][j] * (sims[j] - log_z) for j in range(k.shape[0]))
    return total / q.shape[0]


@SETTINGS
@given(b=st.integers(2, 6), world=st.integers(1, 3), rank=st.integers(0, 2), seed=st.integers(0, 10_000),
       tau=st.sampled_from([0.1, 0.2, 1.0]))
def test_info_nce_hard_matches_naive(b: int, world: int, rank: int, seed: int, tau: float) -> None:
    rank = rank % world
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(b, 5, generator=g, dtype=torch.float64), torch.randn(b * world, 5, generator=g,
                                                                            dtype=torch.float64)
    targets = hard_targets(b, rank)
    rows = [[1.0 if j == rank * b + i else 0.0 for j in range(b * world)] for i in range(b)]
    got = info_nce(q, k, targets, temperature=tau, scale=2 * tau)
    assert got.item() == pytest.approx(2 * tau * naive_info_nce(q.float(), k.float(), rows, tau), rel=1e-4, abs=1e-5)


def test_info_nce_soft_targets() -> None:
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    y = torch.softmax(torch.randn(4, 4, generator=g), dim=1)
    assert info_nce(q, k, y, temperature=0.2).item() == pytest.approx(naive_info_nce(q, k, y.tolist(), 0.2), rel=1e-5)
    one_hot = torch.eye(4)
    assert info_nce(q, k, one_hot, temperature=0.2).item() == pytest.approx(
        info_nce(q, k, hard_targets(4), temperature=0.2).item(), rel=1e-6)


def test_dino_loss_matches_naive_pairs() -> None:
    g = torch.Generator().manual_seed(1)
    teacher = [torch.softmax(torch.randn(3, 7, generator=g), 1) for _ in range(2)]
    student = [torch.randn(3, 7, generator=g) for _ in range(4)]  # 2 global + 2 local
    naive, pairs = 0.0, 0
    for i, t in enumerate(teacher):
        for j, s in enumerate(student):
            if i == j:
                continue
            logp = torch.log_softmax(s / 0.1, dim=1)
            naive += float(-(t * logp).sum(1).mean())
            pairs += 1
    assert pairs == 6
    assert dino_loss(teacher, student, 0.1).item() == pytest.approx(naive / pairs, rel=1e-5)
    assert cross_entropy(teacher[0], student[1], 0.1).item() == pytest.approx(
        float(-(teacher[0] * torch.log_softmax(student[1] / 0.1, 1)).sum(1).mean()), rel=1e-6)


def test_center_is_an_ema_of_the_teacher_mean_and_sharpens() -> None:
    center = Center(4, momentum=0.9)
    a, b = torch.arange(8.0).view(2, 4), torch.ones(3, 4)
    center.update([a, b])
    expected = 0.1 * torch.cat([a, b]).mean(0, keepdim=True)
    assert torch.allclose(center.center, expected)
    center.update([b])
    assert torch.allclose(center.center, 0.9 * expected + 0.1 * torch.ones(1, 4))
    probs = center.teacher_probs(torch.tensor([[1.0, 2.0, 3.0, 4.0]]), 0.04)
    assert torch.allclose(probs, torch.softmax((torch.tensor([[1.0, 2.0, 3.0, 4.0]]) - center.center) / 0.04, 1))


def test_teacher_temperature_schedule() -> None:
    temps = [teacher_temperature(e, warmup_temp=0.04, final_temp=0.07, warmup_epochs=30) for e in range(32)]
    assert temps[0] == pytest.approx(0.04) and temps[29] == pytest.approx(0.07) and temps[31] == 0.07
    assert temps[15] == pytest.approx(0.04 + 0.03 * 15 / 29)  # np.linspace(0.04, 0.07, 30)[15]
    assert teacher_temperature(5, warmup_temp=0.04, final_temp=0.04, warmup_epochs=0) == 0.04


def test_schedules() -> None:
    assert ema_momentum(0, 100, 0.996) == pytest.approx(0.996)
    assert ema_momentum(50, 100, 0.996) == pytest.approx(0.998)
    assert ema_momentum(100, 100, 0.99) == pytest.approx(1.0)
    assert warmup_cosine(5, 100, 10, 1.0, 0.0) == pytest.approx(0.5)
    assert warmup_cosine(10, 100, 10, 1.0, 0.0) == pytest.approx(1.0)
    assert warmup_cosine(55, 100, 10, 1.0, 0.1) == pytest.approx(0.55)
    assert warmup_cosine(100, 100, 10, 1.0, 1e-6) == pytest.approx(1e-6)
    assert cosine(0, 10, 0.04, 0.4) == pytest.approx(0.04) and cosine(10, 10, 0.04, 0.4) == pytest.approx(0.4)


def test_param_groups_exclusions() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2, bias=False))
    groups = param_groups(model, decay_all=False)
    assert [p.shape for p in groups[0]["params"]] == [(4, 3), (2, 4)]
    assert len(groups[1]["params"]) == 3 and groups[1]["weight_decay"] == 0.0
    assert len(param_groups(model, decay_all=True)) == 1
