"""What a run records about a trial besides its settings: the components' plugins and
versions as tags, and the per-epoch series worth a store write."""

from __future__ import annotations

from collections.abc import Set

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


def epoch_metrics(report: EpochReport, constant: Set[str] = frozenset()) -> dict[str, float]:
    """Per-epoch series under ``epoch/...``, without the ``constant`` values (their param
    already holds them; a series per epoch would only cost store writes)."""
    return {
        "epoch/train_loss": report.train_loss,
        "epoch/val_accuracy": report.val_accuracy,
        **{f"epoch/{k}": v for k, v in report.values.items() if k not in constant},
    }
