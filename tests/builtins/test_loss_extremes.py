"""Every logit-based built-in loss is finite, in value and gradient, at the extremes a
sweep reaches (T = 0.1 with N(0, 3²) logits over 100 classes; logits near ±1e4), in
float32 and bf16, and agrees there with its own float64 value."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from kdsweep_builtins.losses import cross_entropy_loss, dist_loss, dkd_loss, hard_kd_loss, kd_loss
from kdsweep_builtins.multi_teacher import multi_teacher_loss
from kdsweep_builtins.mutual import dml_loss
from kdsweep_builtins.self_distill import self_distill_loss

from kdsweep.plugin import LossBatch

CLASSES, BATCH = 100, 64
LOSSES: dict[str, Callable[[LossBatch, float], torch.Tensor]] = {
    "ce": lambda batch, t: cross_entropy_loss(batch),
    "kd": lambda batch, t: kd_loss(batch, temperature=t, alpha=0.9),
    "hard_kd": lambda batch, t: hard_kd_loss(batch, alpha=0.5),
    "dkd": lambda batch, t: dkd_loss(batch, temperature=t, alpha=1.0, beta=8.0),
    "dist": lambda batch, t: dist_loss(batch, temperature=t),
    "multi_teacher": lambda batch, t: multi_teacher_loss(batch, temperature=t),
    "dml": lambda batch, t: dml_loss(batch, temperature=t),
    "self_distill": lambda batch, t: self_distill_loss(batch, temperature=t),
}
# (name, temperature, logits scale, logits offset): where the audit found non-finite losses
EXTREMES = [
    ("T=0.1, N(0, 3^2)", 0.1, 3.0, 0.0),
    ("|logits| ~ 1e4, T=1", 1.0, 1e4, 0.0),
    ("|logits| ~ 1e4, T=4", 4.0, 1e4, 0.0),
    ("logits ~ -1e4, T=1", 1.0, 30.0, -1e4),
]
# How close the low-precision value is to the float64 one (relative, or absolute near 0).
TOLERANCE = {torch.float32: 1e-3, torch.bfloat16: 5e-2}


def _inputs(seed: int, scale: float, offset: float) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    student = torch.randn(BATCH, CLASSES, generator=generator, dtype=torch.float64) * scale
    teacher = torch.randn(BATCH, CLASSES, generator=generator, dtype=torch.float64) * scale
    peer = torch.randn(BATCH, CLASSES, generator=generator, dtype=torch.float64) * scale
    targets = torch.randint(0, CLASSES, (BATCH,), generator=generator)
    return student + offset, teacher + offset, peer + offset, targets


def _value_and_grad(name: str, temperature: float, tensors, dtype) -> tuple[float, torch.Tensor]:
    student, teacher, peer, targets = tensors
    logits = student.detach().to(dtype).clone().requires_grad_()
    batch = LossBatch(
        student_logits=logits,
        targets=targets,
        teacher_logits=teacher.to(dtype),
        all_teacher_logits=(teacher.to(dtype), peer.to(dtype)),
        peer_logits=(peer.to(dtype),),
    )
    value = LOSSES[name](batch, temperature)
    assert value.dim() == 0
    value.backward()
    return float(value.detach()), logits.grad.double()


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize(
    ("label", "temperature", "scale", "offset"), EXTREMES, ids=[e[0] for e in EXTREMES]
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bf16"])
def test_finite_and_close_to_float64(name, label, temperature, scale, offset, dtype) -> None:
    for seed in range(3):
        # The float64 reference sees the same (rounded) inputs as the low-precision run.
        rounded = [
            t.to(dtype).double() if t.is_floating_point() else t
            for t in _inputs(seed, scale, offset)
        ]
        tensors = tuple(rounded)
        reference, reference_grad = _value_and_grad(name, temperature, tensors, torch.float64)
        value, grad = _value_and_grad(name, temperature, tensors, dtype)
        assert torch.isfinite(torch.tensor(value)), f"{name} value is {value} ({label}, {dtype})"
        assert torch.isfinite(grad).all(), f"{name} gradient is not finite ({label}, {dtype})"
        tolerance = TOLERANCE[dtype]
        assert abs(value - reference) <= tolerance * max(1.0, abs(reference)), (value, reference)
        scale_of = float(reference_grad.abs().max()) or 1.0
        assert float((grad - reference_grad).abs().max()) <= 10 * tolerance * max(1.0, scale_of)
