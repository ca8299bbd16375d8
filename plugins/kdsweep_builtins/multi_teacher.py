"""Built-in ``multi_teacher`` loss: soft targets from several teachers at once.

Teachers beyond the first come from ``[teacher] extra = [{ model = ..., width = ... }]``.
"""

from __future__ import annotations

from kdsweep.plugin import LossBatch, Registry, hookimpl
from kdsweep_builtins._lazy import F, torch
from kdsweep_builtins.losses import NON_NEGATIVE, RESPONSE_RANGES, check_temperature

MAX_TEACHERS = 4


def multi_teacher_loss(
    batch: LossBatch,
    temperature: float = 4.0,
    alpha: float = 0.9,
    weight_0: float = 1.0,
    weight_1: float = 1.0,
    weight_2: float = 1.0,
    weight_3: float = 1.0,
) -> torch.Tensor:
    """alpha · T² · KL(q ‖ student_T) + (1 - alpha) · CE, with q = Σ w_i softmax(t_i/T) / Σ w_i.

    ``weight_i`` weighs teacher i (0 is ``[teacher]``, 1.. the extras); equal weights
    average the teachers. Weights are searchable.
    """
    teachers = batch.all_teacher_logits
    if not 1 <= len(teachers) <= MAX_TEACHERS:
        raise ValueError(f"multi_teacher takes 1 to {MAX_TEACHERS} teachers, got {len(teachers)}")
    check_temperature(temperature)
    weights = [weight_0, weight_1, weight_2, weight_3][: len(teachers)]
    if min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(f"teacher weights must be >= 0 and not all 0, got {weights}")
    target = sum(
        w * (t / temperature).softmax(dim=1) for w, t in zip(weights, teachers, strict=True)
    )
    target = target / sum(weights)
    log_student = F.log_softmax(batch.student_logits / temperature, dim=1)
    soft = F.kl_div(log_student, target, reduction="batchmean") * temperature * temperature
    return alpha * soft + (1.0 - alpha) * F.cross_entropy(batch.student_logits, batch.targets)


@hookimpl
def kdsweep_register_losses(registry: Registry) -> None:
    """Register ``multi_teacher``."""
    registry.add_loss(
        "multi_teacher",
        multi_teacher_loss,
        params={
            "temperature": 4.0,
            "alpha": 0.9,
            **{f"weight_{i}": 1.0 for i in range(MAX_TEACHERS)},
        },
        ranges={
            **RESPONSE_RANGES,
            **{f"weight_{i}": NON_NEGATIVE for i in range(MAX_TEACHERS)},
        },
    )
