"""Reference-value tests: each loss against a hand computation on small fixed tensors."""

from __future__ import annotations

import math

import pytest
import torch
from kdsweep_builtins.losses import cross_entropy_loss, kd_loss, kd_loss_batched, soft_target_kl

from kdsweep.plugin import LossBatch

STUDENT = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
TEACHER = [[2.0, 1.0, 0.0], [1.0, 0.0, 2.0]]
TARGETS = [1, 2]


def _softmax(row: list[float], temperature: float = 1.0) -> list[float]:
    exps = [math.exp(v / temperature) for v in row]
    return [e / sum(exps) for e in exps]


def _hand_kl_times_t2(temperature: float) -> float:
    """sum_i sum_c p_t log(p_t / p_s) / batch * T^2, written out with plain floats."""
    total = 0.0
    for s_row, t_row in zip(STUDENT, TEACHER, strict=True):
        p_s, p_t = _softmax(s_row, temperature), _softmax(t_row, temperature)
        total += sum(t * math.log(t / s) for s, t in zip(p_s, p_t, strict=True))
    return total / len(STUDENT) * temperature**2


def _hand_ce() -> float:
    return -sum(math.log(_softmax(row)[y]) for row, y in zip(STUDENT, TARGETS, strict=True)) / 2


def _batch(requires_grad: bool = False) -> LossBatch:
    return LossBatch(
        student_logits=torch.tensor(STUDENT, dtype=torch.float64, requires_grad=requires_grad),
        targets=torch.tensor(TARGETS),
        teacher_logits=torch.tensor(TEACHER, dtype=torch.float64),
    )


def test_ce_matches_hand_value() -> None:
    assert cross_entropy_loss(_batch()).item() == _approx(_hand_ce())


def test_soft_target_kl_is_batchmean_times_t_squared() -> None:
    for temperature in (1.0, 2.0, 4.0):
        batch = _batch()
        value = soft_target_kl(batch.student_logits, batch.teacher_logits, temperature).item()
        assert value == _approx(_hand_kl_times_t2(temperature))


def test_kd_mixes_soft_and_hard_terms_by_alpha() -> None:
    temperature, alpha = 3.0, 0.7
    expected = alpha * _hand_kl_times_t2(temperature) + (1 - alpha) * _hand_ce()
    assert kd_loss(_batch(), temperature=temperature, alpha=alpha).item() == _approx(expected)
    assert kd_loss(_batch(), temperature=temperature, alpha=0.0).item() == _approx(_hand_ce())


def test_kd_gradient_matches_closed_form() -> None:
    # d/ds [T^2 KL(p_t || softmax(s/T))] / batch = T (p_s - p_t) / batch; without the T^2
    # factor it would be (p_s - p_t) / (T batch), so this also pins the T^2 scaling.
    temperature = 4.0
    batch = _batch(requires_grad=True)
    kd_loss(batch, temperature=temperature, alpha=1.0).backward()
    for row in range(2):
        p_s = _softmax(STUDENT[row], temperature)
        p_t = _softmax(TEACHER[row], temperature)
        for c in range(3):
            expected = temperature * (p_s[c] - p_t[c]) / 2
            assert batch.student_logits.grad[row, c].item() == _approx(expected)


def _approx(value: float):
    return pytest.approx(value, rel=1e-9, abs=1e-12)


def test_batched_kd_gives_each_students_kd_and_gradient() -> None:
    """The form fused trials use: k students at once, each with its own temperature and
    alpha, equal (value and gradient) to ``kd_loss`` on each student alone."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 16, 10, generator=generator, dtype=torch.float64)
    teacher = torch.randn(16, 10, generator=generator, dtype=torch.float64)
    targets = torch.randint(0, 10, (16,), generator=generator)
    temperatures, alphas = [1.0, 2.5, 4.0, 17.0], [0.0, 0.3, 0.9, 1.0]
    together = logits.clone().requires_grad_()
    losses = kd_loss_batched(
        LossBatch(together, targets, teacher),
        temperature=torch.tensor(temperatures, dtype=torch.float64),
        alpha=torch.tensor(alphas, dtype=torch.float64),
    )
    assert losses.shape == (4,)
    losses.sum().backward()
    for k, (temperature, alpha) in enumerate(zip(temperatures, alphas, strict=True)):
        alone = logits[k].clone().requires_grad_()
        loss = kd_loss(LossBatch(alone, targets, teacher), temperature=temperature, alpha=alpha)
        loss.backward()
        torch.testing.assert_close(losses[k], loss, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(together.grad[k], alone.grad, rtol=1e-12, atol=1e-12)
