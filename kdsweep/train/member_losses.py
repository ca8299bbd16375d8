"""The training losses of a fused group's members: what each loss sees, and all members'
losses in one call per term when the terms have batched forms
(``Registry.add_loss(batched=...)``), instead of one call per member and term."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from kdsweep.errors import PluginError
from kdsweep.plugin.types import LossBatch
from kdsweep.train.fit import TermState, TrainingLoss


def loss_batch(
    logits: torch.Tensor, targets: torch.Tensor, teacher_logits: tuple[torch.Tensor, ...]
) -> LossBatch:
    """What the loss sees: one member's logits, or every member's stacked in front."""
    return LossBatch(
        student_logits=logits,
        targets=targets,
        teacher_logits=teacher_logits[0] if teacher_logits else None,
        all_teacher_logits=teacher_logits,
    )


def batched_losses(
    losses: Sequence[TrainingLoss],
    values: Sequence[Sequence[TermState]],
    device: torch.device,
) -> Callable[[LossBatch], torch.Tensor] | None:
    """The members' training losses (``losses``, with this epoch's term ``values``) in one
    call per term: ``(k,)`` from a batch of every member's logits (members that share one
    batch stream), when each term has a batched form and numeric params; else ``None``
    (one call per member and term)."""
    terms = losses[0].terms
    if any(len(loss.terms) != len(terms) for loss in losses):
        return None
    stacked = []
    for position, term in enumerate(terms):
        states = [member_values[position] for member_values in values]
        numbers = [state.params for state in states]
        same_keys = all(p.keys() == numbers[0].keys() for p in numbers)
        if term.batched is None or not same_keys or not all(map(_numeric, numbers)):
            return None
        params = {
            key: torch.tensor([float(p[key]) for p in numbers], device=device) for key in numbers[0]
        }
        weights = torch.tensor([state.weight for state in states], device=device)
        stacked.append((term.batched, weights, params))

    def together(batch: LossBatch) -> torch.Tensor:
        total = torch.zeros(len(losses), device=device)
        for batched, weights, params in stacked:
            value = batched(batch, **params)
            if value.shape != total.shape:  # would broadcast silently
                raise PluginError(
                    f"a batched loss returned shape {tuple(value.shape)} for "
                    f"{len(losses)} students: it returns one loss per student"
                )
            total = total + weights * value
        return total

    return together


def _numeric(params: Mapping[str, Any]) -> bool:
    """Whether every param is a number (a batched loss gets each as a tensor)."""
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in params.values())
