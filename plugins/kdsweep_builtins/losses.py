"""Built-in response-based losses: ``ce`` (the no-distillation baseline), ``kd``
(Hinton et al. 2015), ``hard_kd``, ``dkd`` (Zhao et al. 2022) and ``dist`` (Huang et al. 2022).

Each reads only the student's and teacher's logits.
"""

from __future__ import annotations

from kdsweep.plugin import LossBatch, Registry, hookimpl
from kdsweep_builtins._lazy import F, torch

# The allowed values of the response-based losses' params (checked before training).
TEMPERATURE = "(0, inf)"
WEIGHT = "[0, 1]"  # alpha: the share of the distillation term
NON_NEGATIVE = "[0, inf)"
RESPONSE_RANGES = {"temperature": TEMPERATURE, "alpha": WEIGHT}


def cross_entropy_loss(batch: LossBatch) -> torch.Tensor:
    """Label cross-entropy alone: the student trained without distillation."""
    return F.cross_entropy(batch.student_logits, batch.targets)


def check_temperature(temperature: float) -> None:
    """Refuse a temperature of 0 or less (a decaying schedule's floor may reach it)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature} (check its schedule's floor)")


def soft_target_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """KL(teacher_T || student_T) averaged over the batch, times T² (Hinton et al. 2015).

    The T² factor keeps the gradient's size independent of the temperature.
    """
    check_temperature(temperature)
    student_log_probs = F.log_softmax(student_logits / temperature, dim=1)
    teacher_log_probs = F.log_softmax(teacher_logits / temperature, dim=1)
    kl = F.kl_div(student_log_probs, teacher_log_probs, log_target=True, reduction="batchmean")
    return kl * temperature * temperature


def kd_loss(batch: LossBatch, temperature: float = 4.0, alpha: float = 0.9) -> torch.Tensor:
    """Hinton KD: alpha · T² · KL(teacher_T ‖ student_T) + (1 - alpha) · CE(student, labels)."""
    soft = soft_target_kl(batch.student_logits, batch.teacher_logits, temperature)
    hard = F.cross_entropy(batch.student_logits, batch.targets)
    return alpha * soft + (1.0 - alpha) * hard


def kd_loss_batched(
    batch: LossBatch, temperature: torch.Tensor, alpha: torch.Tensor
) -> torch.Tensor:
    """:func:`kd_loss` of k students at once: logits ``(k, batch, classes)``, one
    temperature and alpha per student (``(k,)``); the k losses."""
    scale = temperature.view(-1, 1, 1)
    student_log_probs = F.log_softmax(batch.student_logits / scale, dim=2)
    teacher_log_probs = F.log_softmax(batch.teacher_logits / scale, dim=2)
    kl = F.kl_div(student_log_probs, teacher_log_probs, log_target=True, reduction="none")
    soft = kl.sum(dim=2).mean(dim=1) * temperature * temperature
    students, size = batch.student_logits.shape[:2]
    hard = F.cross_entropy(
        batch.student_logits.transpose(1, 2), batch.targets.expand(students, size), reduction="none"
    ).mean(dim=1)
    return alpha * soft + (1.0 - alpha) * hard


def hard_kd_loss(batch: LossBatch, alpha: float = 0.5) -> torch.Tensor:
    """Hard-label KD: alpha · CE(student, teacher argmax) + (1 - alpha) · CE(student, labels)."""
    teacher_labels = batch.teacher_logits.argmax(dim=1)
    return alpha * F.cross_entropy(batch.student_logits, teacher_labels) + (
        1.0 - alpha
    ) * F.cross_entropy(batch.student_logits, batch.targets)


def dkd_loss(
    batch: LossBatch,
    temperature: float = 4.0,
    alpha: float = 1.0,
    beta: float = 8.0,
    ce_weight: float = 1.0,
) -> torch.Tensor:
    """Decoupled KD: ce_weight · CE + alpha · TCKD + beta · NCKD (Zhao et al., CVPR 2022).

    TCKD is the KL between teacher and student binary (target, non-target) probabilities,
    NCKD the KL between their distributions over the non-target classes; both times T².
    """
    check_temperature(temperature)
    student, teacher = batch.student_logits / temperature, batch.teacher_logits / temperature
    target = F.one_hot(batch.targets, student.shape[1]).bool()
    # The binary (target, rest) distributions in log space, by log-sum-exp: log p_target
    # = z_t - lse(z), log(1 - p_target) = lse(z_rest) - lse(z). Summing probabilities and
    # taking the log, as the authors' code does, underflows once (max z - z_t) / T > ~95.
    tckd = F.kl_div(
        _target_rest_log_probs(student, target),
        _target_rest_log_probs(teacher, target),
        log_target=True,
        reduction="batchmean",
    )
    # The distribution over the non-target classes: the target column left out.
    rest = student.shape[1] - 1
    nckd = F.kl_div(
        F.log_softmax(student[~target].view(-1, rest), dim=1),
        F.log_softmax(teacher[~target].view(-1, rest), dim=1),
        log_target=True,
        reduction="batchmean",
    )
    scale = temperature * temperature
    return ce_weight * F.cross_entropy(batch.student_logits, batch.targets) + scale * (
        alpha * tckd + beta * nckd
    )


def _target_rest_log_probs(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(log p_target, log p_rest) of ``softmax(logits)`` per row, shape (B, 2)."""
    total = torch.logsumexp(logits, dim=1)
    rest = torch.logsumexp(logits.masked_fill(target, float("-inf")), dim=1)
    return torch.stack([logits[target] - total, rest - total], dim=1)


def _pearson_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of each row of ``a`` with the same row of ``b``."""
    return F.cosine_similarity(a - a.mean(dim=1, keepdim=True), b - b.mean(dim=1, keepdim=True))


def dist_loss(
    batch: LossBatch,
    temperature: float = 4.0,
    beta: float = 2.0,
    gamma: float = 2.0,
    ce_weight: float = 1.0,
) -> torch.Tensor:
    """DIST: ce_weight · CE + T² · (beta · inter + gamma · intra) (Huang et al., NeurIPS 2022).

    inter = 1 - mean Pearson correlation between student and teacher predictions of each
    sample; intra = the same for each class across the batch.
    """
    check_temperature(temperature)
    p_student = (batch.student_logits / temperature).softmax(dim=1)
    p_teacher = (batch.teacher_logits / temperature).softmax(dim=1)
    inter = 1 - _pearson_rows(p_student, p_teacher).mean()
    intra = 1 - _pearson_rows(p_student.t(), p_teacher.t()).mean()
    return ce_weight * F.cross_entropy(batch.student_logits, batch.targets) + (
        temperature * temperature
    ) * (beta * inter + gamma * intra)


@hookimpl
def kdsweep_register_losses(registry: Registry) -> None:
    """Register ``ce``, ``kd``, ``hard_kd``, ``dkd`` and ``dist``."""
    registry.add_loss("ce", cross_entropy_loss, needs_teacher=False)
    registry.add_loss(
        "kd",
        kd_loss,
        params={"temperature": 4.0, "alpha": 0.9},
        ranges=RESPONSE_RANGES,
        default=True,
        batched=kd_loss_batched,
    )
    registry.add_loss("hard_kd", hard_kd_loss, params={"alpha": 0.5}, ranges={"alpha": WEIGHT})
    registry.add_loss(
        "dkd",
        dkd_loss,
        params={"temperature": 4.0, "alpha": 1.0, "beta": 8.0, "ce_weight": 1.0},
        ranges={
            "temperature": TEMPERATURE,
            **dict.fromkeys(("alpha", "beta", "ce_weight"), NON_NEGATIVE),
        },
    )
    registry.add_loss(
        "dist",
        dist_loss,
        params={"temperature": 4.0, "beta": 2.0, "gamma": 2.0, "ce_weight": 1.0},
        ranges={
            "temperature": TEMPERATURE,
            **dict.fromkeys(("beta", "gamma", "ce_weight"), NON_NEGATIVE),
        },
    )
