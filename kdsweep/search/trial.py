"""One Optuna trial as the rest of kdsweep sees it: its sampled params, its per-epoch
reports (and the pruning verdicts on them), and how it is told to Optuna in the end."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from kdsweep.faults import fault_point
from kdsweep.search.pruners import EPOCH_VALUES, WidthPruning, reads_running_trials
from kdsweep.search.storage import save_intermediate_values
from kdsweep.study.goals import Constraint, Goal
from kdsweep.study.space import WIDTH, Dimension

EPOCH_VALUES_SAVE_S = 5.0  # a running trial's per-epoch values reach the storage this often


class TrialPruned(optuna.TrialPruned):
    """Raised by :meth:`TrialHandle.report` when the pruner stops a trial."""


class InterruptedAfter(KeyboardInterrupt):
    """Ctrl-C while a launch's trials were waited for, after some of them had ended and
    been recorded: their results by trial number, to be told as usual; the others are
    failed as interrupted."""

    def __init__(self, results: Mapping[int, Mapping[str, float] | Exception]) -> None:
        super().__init__("interrupted")
        self.results = dict(results)


@dataclass
class TrialHandle:
    """What the training side sees of an Optuna trial."""

    trial: optuna.Trial
    params: dict[str, Any]
    pruner: optuna.pruners.BasePruner = field(default_factory=optuna.pruners.NopPruner)
    epoch_values: dict[str, float] = field(default_factory=dict)
    interrupted: threading.Event | None = None  # set when another thread saw Ctrl-C
    _pruning: WidthPruning | None = None
    _saved_at: float | None = None
    _saved_count: int = 0  # epoch values stored by the last save
    _multi_objective: bool | None = None

    @property
    def number(self) -> int:
        """The Optuna trial number."""
        return self.trial.number

    def report(self, step: int, value: float) -> None:
        """Record validation accuracy at ``step``; raises :class:`TrialPruned` if the pruner,
        comparing with trials of the same width, stops the trial.

        Unless the pruner reads running trials, the values are written after the first
        epoch, then at most every ``EPOCH_VALUES_SAVE_S`` and when the trial ends
        (:meth:`save`): not a storage write per short epoch.
        """
        if self.interrupted is not None and self.interrupted.is_set():
            raise KeyboardInterrupt("interrupted")
        self.epoch_values[str(step)] = value
        if not reads_running_trials(self.pruner):
            now = time.monotonic()
            if self._saved_at is None or now - self._saved_at >= EPOCH_VALUES_SAVE_S:
                self.save()
                self._saved_at = now
        if self._pruning is None:
            self._pruning = WidthPruning(self.pruner, self.trial, self.params.get(WIDTH))
        if self._pruning.should_prune(self.epoch_values):
            raise TrialPruned(f"pruned at epoch {step} (val_accuracy {value:.4f})")

    def save(self) -> None:
        """Write the per-epoch values that :meth:`report` kept in memory, and (in a
        single-objective study) the ones not stored yet as Optuna intermediate values;
        nothing when none came since the last save."""
        new = list(self.epoch_values.items())[self._saved_count :]  # epochs come in order
        if not new:
            return
        self._saved_count = len(self.epoch_values)
        if not reads_running_trials(self.pruner):
            self.trial.set_user_attr(EPOCH_VALUES, self.epoch_values)
        if self._multi_objective is None:  # a storage read: once per trial
            self._multi_objective = len(self.trial.study.directions) > 1
        if self._multi_objective:
            return  # see save_intermediate_values: TPE then fails on every pruned trial
        save_intermediate_values(self.trial, {int(step): value for step, value in new})


def sample_params(trial: optuna.Trial, space: Sequence[Dimension]) -> dict[str, Any]:
    """Ask the sampler for a value of every searched setting (path -> value)."""
    params: dict[str, Any] = {}
    for dim in space:
        if dim.kind == "categorical":
            params[dim.path] = trial.suggest_categorical(dim.path, list(dim.choices))
        elif dim.kind == "int":
            params[dim.path] = trial.suggest_int(
                dim.path, int(dim.low), int(dim.high), step=int(dim.step or 1), log=dim.log
            )
        else:
            params[dim.path] = trial.suggest_float(
                dim.path, dim.low, dim.high, step=dim.step, log=dim.log
            )
    return params


@dataclass(frozen=True)
class Outcome:
    """How one trial ended."""

    number: int
    state: TrialState
    values: list[float] | None
    reason: str = ""


def fail(study: optuna.Study, handles: Sequence[TrialHandle], reason: str) -> None:
    """Tell Optuna the trials failed, keeping their epoch values and the reason."""
    for handle in handles:
        handle.save()
        handle.trial.set_user_attr("fail_reason", reason)
        study.tell(handle.trial, state=TrialState.FAIL)


def tell(
    study: optuna.Study,
    trial: optuna.Trial,
    result: Mapping[str, float] | Exception,
    goals: Sequence[Goal],
    constraints: Sequence[Constraint],
) -> Outcome:
    """Tell Optuna how the trial ended: complete with its goal values, pruned or failed."""
    if isinstance(result, optuna.TrialPruned):
        trial.set_user_attr("prune_reason", str(result))
        study.tell(trial, state=TrialState.PRUNED)
        return Outcome(trial.number, TrialState.PRUNED, None, str(result))
    try:
        if isinstance(result, Exception):
            raise result
        values = [result[goal.metric] for goal in goals]
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        trial.set_user_attr("fail_reason", reason)
        study.tell(trial, state=TrialState.FAIL)
        return Outcome(trial.number, TrialState.FAIL, None, reason)
    for constraint in constraints:
        trial.set_constraint(str(constraint), constraint.violation(result))
    fault_point("before_tell")  # MLflow has the run's end, Optuna not yet
    study.tell(trial, values)
    shown = ", ".join(f"{g.metric} {v:.4g}" for g, v in zip(goals, values, strict=True))
    return Outcome(trial.number, TrialState.COMPLETE, values, shown)
