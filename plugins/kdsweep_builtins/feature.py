"""Built-in feature-based losses: ``fitnet`` (Romero et al. 2015) and ``at`` (attention
transfer, Zagoruyko & Komodakis 2017).

They read intermediate layers named by their ``student_layer`` and ``teacher_layer``
params; kdsweep captures those with forward hooks. Use them as terms added to ``kd`` or
``ce`` (``[loss.add.fitnet]``): alone they ignore the labels.
"""

from __future__ import annotations

from kdsweep.plugin import LossBatch, Registry, hookimpl, split_layers
from kdsweep_builtins._lazy import F, torch

LAYERS = {"student_layer": "student", "teacher_layer": "teacher"}


def at_same_size(student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Two (B, C, H, W) maps at the smaller spatial size of the two: the larger one is
    average-pooled down, as the reference implementations of FitNets and AT do (pooling
    keeps each output cell the mean of the input cells it covers; stretching the smaller
    map up would compare invented detail)."""
    if student.shape[2:] == teacher.shape[2:]:
        return student, teacher
    size = tuple(min(s, t) for s, t in zip(student.shape[2:], teacher.shape[2:], strict=True))
    return F.adaptive_avg_pool2d(student, size), F.adaptive_avg_pool2d(teacher, size)


def attention_map(features: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Spatial attention of a (B, C, H, W) map: mean over channels of |f|^p, L2-normalised."""
    return F.normalize(features.abs().pow(p).mean(dim=1).flatten(1), dim=1)


def attention_transfer_loss(
    batch: LossBatch, student_layer: str = "", teacher_layer: str = "", p: float = 2.0
) -> torch.Tensor:
    """AT: sum over layer pairs of mean((A_student - A_teacher)²), A = attention_map."""
    student_layers, teacher_layers = split_layers(student_layer), split_layers(teacher_layer)
    if len(student_layers) != len(teacher_layers):
        raise ValueError(
            f"at pairs layers one to one: {len(student_layers)} student and "
            f"{len(teacher_layers)} teacher layers given"
        )
    total = torch.zeros((), device=batch.student_logits.device)
    for s_name, t_name in zip(student_layers, teacher_layers, strict=True):
        student, teacher = batch.student_features[s_name], batch.teacher_features[t_name]
        student, teacher = at_same_size(student, teacher)
        total = total + (attention_map(student, p) - attention_map(teacher, p)).pow(2).mean()
    return total


@hookimpl
def kdsweep_register_losses(registry: Registry) -> None:
    """Register ``fitnet`` and ``at``."""
    registry.add_loss(
        "fitnet",
        "kdsweep_builtins._feature_modules:FitNetLoss",  # an nn.Module: imported when used
        description="FitNets hint: MSE(connector(student layer), teacher layer).",
        params={"student_layer": "penultimate", "teacher_layer": "penultimate"},
        layers=LAYERS,
    )
    registry.add_loss(
        "at",
        attention_transfer_loss,
        params={"student_layer": "", "teacher_layer": "", "p": 2.0},
        ranges={"p": "(0, inf)"},
        layers=LAYERS,
    )
