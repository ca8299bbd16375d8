"""Built-in losses: ``ce`` (no distillation, the baseline) and ``kd`` (Hinton et al. 2015)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdsweep.plugin import LossBatch, Registry, hookimpl


def cross_entropy_loss(batch: LossBatch) -> torch.Tensor:
    """Label cross-entropy alone: the student trained without distillation."""
    return F.cross_entropy(batch.student_logits, batch.targets)


def soft_target_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """KL(teacher_T || student_T) averaged over the batch, times T² (Hinton et al. 2015).

    The T² factor keeps the gradient's size independent of the temperature.
    """
    student_log_probs = F.log_softmax(student_logits / temperature, dim=1)
    teacher_log_probs = F.log_softmax(teacher_logits / temperature, dim=1)
    kl = F.kl_div(student_log_probs, teacher_log_probs, log_target=True, reduction="batchmean")
    return kl * temperature * temperature


def kd_loss(batch: LossBatch, temperature: float = 4.0, alpha: float = 0.9) -> torch.Tensor:
    """Hinton KD: alpha · T² · KL(teacher_T ‖ student_T) + (1 - alpha) · CE(student, labels)."""
    assert batch.teacher_logits is not None
    soft = soft_target_kl(batch.student_logits, batch.teacher_logits, temperature)
    hard = F.cross_entropy(batch.student_logits, batch.targets)
    return alpha * soft + (1.0 - alpha) * hard


@hookimpl
def kdsweep_register_losses(registry: Registry) -> None:
    """Register ``ce`` and ``kd``."""
    registry.add_loss("ce", cross_entropy_loss, needs_teacher=False)
    registry.add_loss("kd", kd_loss, params={"temperature": 4.0, "alpha": 0.9})
