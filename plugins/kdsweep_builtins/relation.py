"""Built-in relation-based losses: ``rkd`` (relational KD, Park et al., CVPR 2019) and
``sp`` (similarity-preserving KD, Tung & Mori, ICCV 2019).

They compare how samples of a batch relate to each other, in the student's and in the
teacher's embedding (by default the input of the classifier, ``penultimate``), so student
and teacher may have different widths. Use them as terms added to ``kd`` or ``ce``.
"""

from __future__ import annotations

from kdsweep.plugin import LossBatch, Registry, hookimpl, split_layers
from kdsweep_builtins._lazy import F, torch

LAYERS = {"student_layer": "student", "teacher_layer": "teacher"}


def pairwise_distances(embedding: torch.Tensor) -> torch.Tensor:
    """Euclidean distances between the rows of a (B, D) matrix; zero on the diagonal."""
    squared = embedding.pow(2).sum(dim=1)
    gram = embedding @ embedding.t()
    distances = (squared.unsqueeze(0) + squared.unsqueeze(1) - 2 * gram).clamp(min=1e-12).sqrt()
    return distances * (1 - torch.eye(len(embedding), device=embedding.device))


def _normalised_distances(embedding: torch.Tensor) -> torch.Tensor:
    distances = pairwise_distances(embedding)
    return distances / distances[distances > 0].mean()


def _angles(embedding: torch.Tensor) -> torch.Tensor:
    """cos of the angle at j between i and k, for every triplet (i, j, k)."""
    directions = F.normalize(embedding.unsqueeze(0) - embedding.unsqueeze(1), dim=2)
    return torch.bmm(directions, directions.transpose(1, 2)).flatten()


def rkd_loss(
    batch: LossBatch,
    student_layer: str = "penultimate",
    teacher_layer: str = "penultimate",
    distance_weight: float = 1.0,
    angle_weight: float = 2.0,
) -> torch.Tensor:
    """RKD: distance_weight · Huber(distances) + angle_weight · Huber(angles).

    Distances are normalised by their mean within the batch; angles are the cosines of the
    angles formed by every triplet of samples.
    """
    student = batch.student_features[student_layer].flatten(1)
    teacher = batch.teacher_features[teacher_layer].flatten(1)
    distance = F.smooth_l1_loss(_normalised_distances(student), _normalised_distances(teacher))
    angle = F.smooth_l1_loss(_angles(student), _angles(teacher))
    return distance_weight * distance + angle_weight * angle


def similarity_matrix(features: torch.Tensor) -> torch.Tensor:
    """Row-normalised (B, B) Gram matrix of the flattened features."""
    flat = features.flatten(1)
    return F.normalize(flat @ flat.t(), dim=1)


def sp_loss(
    batch: LossBatch, student_layer: str = "penultimate", teacher_layer: str = "penultimate"
) -> torch.Tensor:
    """SP: sum over layer pairs of ‖G_student - G_teacher‖²_F / B², G = similarity_matrix."""
    pairs = list(zip(split_layers(student_layer), split_layers(teacher_layer), strict=True))
    total = torch.zeros((), device=batch.student_logits.device)
    for s_name, t_name in pairs:
        student = similarity_matrix(batch.student_features[s_name])
        teacher = similarity_matrix(batch.teacher_features[t_name])
        total = total + (student - teacher).pow(2).sum() / len(student) ** 2
    return total


@hookimpl
def kdsweep_register_losses(registry: Registry) -> None:
    """Register ``rkd`` and ``sp``."""
    registry.add_loss(
        "rkd",
        rkd_loss,
        params={
            "student_layer": "penultimate",
            "teacher_layer": "penultimate",
            "distance_weight": 1.0,
            "angle_weight": 2.0,
        },
        ranges={"distance_weight": "[0, inf)", "angle_weight": "[0, inf)"},
        layers=LAYERS,
    )
    registry.add_loss(
        "sp",
        sp_loss,
        params={"student_layer": "penultimate", "teacher_layer": "penultimate"},
        layers=LAYERS,
    )
