"""Hook specifications: every hook a kdsweep plugin may implement.

Each hook receives the :class:`~kdsweep.plugin.Registry` and adds components to it.
Hooks return nothing; they must not train, download or read large files (loading data
belongs in the dataset's ``load`` function, which runs only when a study uses it).
"""

from __future__ import annotations

import pluggy

from kdsweep.plugin.registry import Registry
from kdsweep.project import NAME

hookspec = pluggy.HookspecMarker(NAME)


@hookspec
def kdsweep_register_teachers(registry: Registry) -> None:
    """Register teacher models.

    :param registry: call ``registry.add_teacher(name, build)`` for each model, where
        ``build(width, num_classes, input_shape)`` returns an ``nn.Module`` giving logits.
    """


@hookspec
def kdsweep_register_students(registry: Registry) -> None:
    """Register student models.

    :param registry: call ``registry.add_student(name, build)`` for each model, where
        ``build(width, num_classes, input_shape)`` returns an ``nn.Module`` giving logits;
        ``width`` sets the model's size and is what a study searches.
    """


@hookspec
def kdsweep_register_losses(registry: Registry) -> None:
    """Register training losses (distillation losses and plain baselines).

    :param registry: call ``registry.add_loss(name, loss, params={...}, needs_teacher=...)``,
        where ``loss(batch: LossBatch, **params)`` returns a scalar tensor and ``params``
        declares the searchable hyperparameters with their defaults.
    """


@hookspec
def kdsweep_register_schedules(registry: Registry) -> None:
    """Register schedules for values that change over training (e.g. the temperature).

    :param registry: call ``registry.add_schedule(name, schedule, params={...})``, where
        ``schedule(base, epoch, epochs, **params)`` returns the value for 0-based ``epoch``.
    """


@hookspec
def kdsweep_register_datasets(registry: Registry) -> None:
    """Register datasets.

    :param registry: call ``registry.add_dataset(name, load, params={...})``, where
        ``load(**params)`` returns a :class:`~kdsweep.plugin.DataSplits`.
    """
