"""What a run records about a trial besides its settings: the components' plugins and
versions as tags, and the per-epoch series worth a store write."""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Any

from kdsweep.study.schema import SCHEDULE_TARGETS
from kdsweep.study.settings import TrialSettings
from kdsweep.study.study import Study
from kdsweep.train.fit import EpochReport


def component_tags(study: Study, settings: TrialSettings) -> dict[str, str]:
    """``kdsweep.<role>`` = component name, with ``.plugin`` and ``.version``."""
    chosen = {
        "dataset": ("dataset", settings.dataset.name),
        "teacher": ("teacher", settings.teacher.model),
        "student": ("student", settings.student.model),
        "loss": ("loss", settings.loss.name),
        **{
            f"schedule.{target}": ("schedule", choice.name)
            for target, choice in settings.schedules.items()
        },
        **{f"loss.add.{term.name}": ("loss", term.name) for term in settings.extra_losses},
        **{
            f"teacher.extra.{number}": ("teacher", choice.model)
            for number, choice in enumerate(settings.extra_teachers)
        },
    }
    tags = {}
    for role, (kind, name) in chosen.items():
        component = study.registry.get(kind, name)
        tags[f"kdsweep.{role}"] = name
        tags[f"kdsweep.{role}.plugin"] = component.origin.plugin
        tags[f"kdsweep.{role}.version"] = component.origin.version
    return tags


def constant_values(settings: TrialSettings) -> frozenset[str]:
    """The reported values that do not move: no schedule (and, for the lr, no warm-up)."""
    return frozenset(
        target
        for target in SCHEDULE_TARGETS
        if target not in settings.schedules
        and (target != "lr" or settings.train.warmup_epochs == 0)
    )


SHORT_NAMES = {"student.width": "w", "loss.temperature": "T=", "loss.alpha": "a="}
SHOWN_DIGITS = {"train_time_s": 3, "latency_ms": 4}  # others: 4 decimals; counts stay exact
EXACT = frozenset({"params", "flops", "size_bytes", "pruned_at_epoch"})


def run_name(number: int, params: Mapping[str, Any]) -> str:
    """A trial run's name with its searched values, e.g. ``t12 w4 T=6.9 a=0.44``."""
    parts = [f"t{number}"]
    order = list(SHORT_NAMES)
    for path, value in sorted(
        params.items(), key=lambda item: order.index(item[0]) if item[0] in order else len(order)
    ):
        label = SHORT_NAMES.get(path, f"{path.rsplit('.', 1)[-1]}=")
        shown = f"{value:.2g}" if isinstance(value, float) and not value.is_integer() else value
        parts.append(f"{label}{shown:g}" if isinstance(shown, float) else f"{label}{shown}")
    return " ".join(parts)[:120]


def shown_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """Final metrics as MLflow shows them: accuracies and gains to 4 decimals, times to a
    millisecond; counts exact (Optuna keeps the exact values)."""
    return {
        key: value if key in EXACT else round(value, SHOWN_DIGITS.get(key, 4))
        for key, value in metrics.items()
    }


def epoch_metrics(report: EpochReport, constant: Set[str] = frozenset()) -> dict[str, float]:
    """Per-epoch series under ``epoch/...``, without the ``constant`` values (their param
    already holds them; a series per epoch would only cost store writes)."""
    return {
        "epoch/train_loss": report.train_loss,
        "epoch/val_accuracy": report.val_accuracy,
        **{f"epoch/{k}": v for k, v in report.values.items() if k not in constant},
    }
