"""Built-in ``dml``: deep mutual learning (Zhang et al., CVPR 2018).

``peers`` students of the study's architecture train together from scratch, no teacher
needed; each learns from the labels and from the other peers' predictions. The trial's
metrics are those of the first peer.
"""

from __future__ import annotations

from kdsweep.plugin import LossBatch, Registry, hookimpl
from kdsweep_builtins._lazy import F, torch
from kdsweep_builtins.losses import RESPONSE_RANGES, check_temperature


def dml_loss(
    batch: LossBatch, peers: int = 2, temperature: float = 1.0, alpha: float = 0.5
) -> torch.Tensor:
    """(1 - alpha) · CE + alpha · T² · mean over other peers j of KL(peer_j,T ‖ student_T)."""
    if not batch.peer_logits:
        raise ValueError(f"dml needs peers >= 2, got {peers}")
    check_temperature(temperature)
    log_student = F.log_softmax(batch.student_logits / temperature, dim=1)
    kl = sum(
        F.kl_div(
            log_student,
            F.log_softmax(peer / temperature, dim=1),
            log_target=True,
            reduction="batchmean",
        )
        for peer in batch.peer_logits
    ) / len(batch.peer_logits)
    hard = F.cross_entropy(batch.student_logits, batch.targets)
    return (1.0 - alpha) * hard + alpha * kl * temperature * temperature


@hookimpl
def kdsweep_register_losses(registry: Registry) -> None:
    """Register ``dml``."""
    registry.add_loss(
        "dml",
        dml_loss,
        params={"peers": 2, "temperature": 1.0, "alpha": 0.5},
        ranges={"peers": "[2, inf)", **RESPONSE_RANGES},
        training="mutual",
    )
