"""Optuna pruners from ``[study] pruner``, and pruning per student width.

A trial is compared only with trials of its own student width (a width-2 student is not
a bad width-16 one), through its per-epoch validation accuracy. Those values are kept as
a user attribute, not as Optuna intermediate values: Optuna refuses those in
multi-objective studies, and its TPE sampler then fails on them. The pruner sees them as
intermediate values through the views below.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from kdsweep.search import storage
from kdsweep.search.options import checked_options, construct, failing_at, named_class
from kdsweep.study.space import WIDTH
from kdsweep.study.study import StudySettings

PRUNER_CLASSES = {
    "median": optuna.pruners.MedianPruner,
    "percentile": optuna.pruners.PercentilePruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "none": optuna.pruners.NopPruner,
}
PRUNER_DEFAULTS: dict[str, dict[str, Any]] = {
    "median": {"n_startup_trials": 5, "n_warmup_steps": 2},
    "percentile": {"percentile": 25.0, "n_startup_trials": 5, "n_warmup_steps": 2},
}
EPOCH_VALUES = "epoch_val_accuracy"  # user attr: {epoch: validation accuracy}
PEERS_REFRESH_S = 5.0  # how old the complete trials a median pruner compares with may be


def make_pruner(settings: StudySettings, path: Path) -> optuna.pruners.BasePruner:
    """The pruner named in ``[study] pruner``."""
    name = settings.pruner
    fail = failing_at(path, "pruner", name)
    cls = named_class(PRUNER_CLASSES, name, fail)
    kwargs = {**PRUNER_DEFAULTS.get(name, {})}
    kwargs.update(checked_options(cls, settings.pruner_options, fail))
    return construct(cls, kwargs, fail)


def reads_running_trials(pruner: optuna.pruners.BasePruner) -> bool:
    """Whether the pruner reads running trials' values (they are then written every
    epoch): median and percentile pruners compare with complete trials only."""
    kinds = optuna.pruners.NopPruner | optuna.pruners.PercentilePruner
    return not isinstance(pruner, kinds)


def with_epoch_values(trial: FrozenTrial, values: Mapping[str, float] | None = None) -> FrozenTrial:
    """A copy of ``trial`` whose intermediate values are its per-epoch accuracies (``values``,
    or those stored in its user attributes)."""
    view = copy.copy(trial)
    values = trial.user_attrs.get(EPOCH_VALUES, {}) if values is None else values
    view.intermediate_values = {int(step): value for step, value in values.items()}
    return view


class WidthPruning:
    """Decides, epoch by epoch, whether to prune one trial against trials of its width."""

    def __init__(self, pruner: optuna.pruners.BasePruner, trial: optuna.Trial, width: Any):
        self.pruner = pruner
        self.trial = trial
        self.width = width
        self._frozen: FrozenTrial | None = None
        self._peers: list[FrozenTrial] | None = None
        self._peers_at = 0.0

    @property
    def active(self) -> bool:
        """Whether any pruning happens at all."""
        return not isinstance(self.pruner, optuna.pruners.NopPruner)

    def should_prune(self, epoch_values: Mapping[str, float]) -> bool:
        """Whether the pruner stops the trial, given its values so far."""
        if not self.active:
            return False
        study: Any = _SameWidth(self.trial.study, self.width)
        if isinstance(self.pruner, optuna.pruners.PercentilePruner):
            # Median and percentile pruners compare with complete trials only: this trial's
            # values can stay in memory until it ends, its other fields do not change, and
            # the complete trials are read again only every PEERS_REFRESH_S.
            if self._frozen is None:
                self._frozen = storage.frozen(self.trial)
            trial = with_epoch_values(self._frozen, epoch_values)
            if self._peers is None or time.monotonic() - self._peers_at > PEERS_REFRESH_S:
                self._peers = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                self._peers_at = time.monotonic()
            study = _Fixed(study, self._peers)
        else:  # e.g. successive halving: other running trials read these; rungs change
            self.trial.set_user_attr(EPOCH_VALUES, dict(epoch_values))
            trial = with_epoch_values(storage.frozen(self.trial))
        return self.pruner.prune(study, trial)


class _SameWidth:
    """The study as a pruner sees it: only trials of one student width, with their
    per-epoch validation accuracy as intermediate values, maximised."""

    def __init__(self, study: optuna.Study, width: Any) -> None:
        self._study = study
        self._width = width

    @property
    def direction(self) -> StudyDirection:
        return StudyDirection.MAXIMIZE

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list[FrozenTrial]:
        trials = self._study.get_trials(deepcopy=deepcopy, states=states)
        return [
            with_epoch_values(t) for t in trials if t.params.get(WIDTH, self._width) == self._width
        ]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)


class _Fixed:
    """A study view whose complete trials are a list read earlier."""

    def __init__(self, study: Any, complete: list[FrozenTrial]) -> None:
        self._study = study
        self._complete = complete

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list[FrozenTrial]:
        if tuple(states or ()) != (TrialState.COMPLETE,):
            return self._study.get_trials(deepcopy=deepcopy, states=states)
        return self._complete

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)
