"""Built-in ``self_distill``: born-again networks (Furlanello et al., ICML 2018).

Generation 0 is the study's student trained on labels alone; generation k + 1, the same
architecture, distils from generation k with the KD loss. The trial's metrics are those
of the last generation; its training time is that of all generations.
"""

from __future__ import annotations

from kdsweep.plugin import LossBatch, Registry, hookimpl
from kdsweep_builtins._lazy import torch
from kdsweep_builtins.losses import RESPONSE_RANGES, kd_loss


def self_distill_loss(
    batch: LossBatch, generations: int = 2, temperature: float = 4.0, alpha: float = 0.9
) -> torch.Tensor:
    """The KD loss, with the previous generation as the teacher."""
    return kd_loss(batch, temperature=temperature, alpha=alpha)


@hookimpl
def kdsweep_register_losses(registry: Registry) -> None:
    """Register ``self_distill``."""
    registry.add_loss(
        "self_distill",
        self_distill_loss,
        params={"generations": 2, "temperature": 4.0, "alpha": 0.9},
        ranges={"generations": "[1, inf)", **RESPONSE_RANGES},
        training="generations",
    )
