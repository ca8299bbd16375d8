"""The Optuna side: study, sampler, pruner and the ask-and-tell loop.

Knows nothing of PyTorch or MLflow: it asks for trial parameters, hands them to an
objective and tells Optuna the outcome.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from kdsweep.config import StudySettings
from kdsweep.goals import DEFAULT_GOALS, Constraint, Goal
from kdsweep.space import Dimension

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class TrialPruned(optuna.TrialPruned):
    """Raised by :meth:`TrialHandle.report` when the pruner stops a trial."""


WIDTH = "student.width"


EPOCH_VALUES = "epoch_val_accuracy"  # user attr: {epoch: validation accuracy}


def _with_epoch_values(trial: FrozenTrial) -> FrozenTrial:
    """A copy of ``trial`` whose intermediate values are its per-epoch accuracies."""
    view = copy.copy(trial)
    view.intermediate_values = {
        int(step): value for step, value in trial.user_attrs.get(EPOCH_VALUES, {}).items()
    }
    return view


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
            _with_epoch_values(t) for t in trials if t.params.get(WIDTH, self._width) == self._width
        ]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)


@dataclass
class TrialHandle:
    """What the objective sees of an Optuna trial."""

    trial: optuna.Trial
    params: dict[str, Any]
    pruner: optuna.pruners.BasePruner = field(default_factory=optuna.pruners.NopPruner)
    epoch_values: dict[str, float] = field(default_factory=dict)

    @property
    def number(self) -> int:
        """The Optuna trial number."""
        return self.trial.number

    def report(self, step: int, value: float) -> None:
        """Record validation accuracy at ``step``; raises :class:`TrialPruned` if the pruner,
        comparing with trials of the same width, stops the trial.

        The values are kept as a user attribute, not as Optuna intermediate values: Optuna
        refuses those in multi-objective studies, and its TPE sampler then fails on them.
        """
        self.epoch_values[str(step)] = value
        self.trial.set_user_attr(EPOCH_VALUES, self.epoch_values)
        frozen = _with_epoch_values(self.trial.storage.get_trial(self.trial._trial_id))
        if self.pruner.prune(_SameWidth(self.trial.study, self.params.get(WIDTH)), frozen):
            raise TrialPruned(f"pruned at epoch {step} (val_accuracy {value:.4f})")


# objective(handle) -> the trial's recorded metrics (val_accuracy, params, ...)
Objective = Callable[[TrialHandle], Mapping[str, float]]


def open_study(
    settings: StudySettings, storage: str, sampler: optuna.samplers.BaseSampler
) -> optuna.Study:
    """Create the study, or load it when it exists (so a rerun resumes it)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        study_name=settings.name,
        storage=storage,
        sampler=sampler,
        pruner=optuna.pruners.NopPruner(),  # kdsweep prunes per width, see TrialHandle.report
        directions=[goal.direction for goal in settings.objectives],
        load_if_exists=True,
    )


def finished_trials(study: optuna.Study) -> int:
    """Trials that count towards ``n_trials``: complete or pruned."""
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def suggest(trial: optuna.Trial, space: Sequence[Dimension]) -> dict[str, Any]:
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


def run_trials(
    study: optuna.Study,
    space: Sequence[Dimension],
    objective: Objective,
    n_trials: int,
    timeout: float | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
    *,
    goals: Sequence[Goal] = DEFAULT_GOALS,
    constraints: Sequence[Constraint] = (),
    pruner: optuna.pruners.BasePruner | None = None,
) -> list[Outcome]:
    """Run trials until the study holds ``n_trials`` finished ones or ``timeout`` passes.

    Each call makes at most as many attempts as trials were missing when it began, so a
    failing objective cannot loop forever; a failure stays inside its trial. Ctrl-C marks
    the running trial failed and propagates.
    """
    started = time.monotonic()
    outcomes: list[Outcome] = []
    for _ in range(max(0, n_trials - finished_trials(study))):
        if timeout is not None and time.monotonic() - started >= timeout:
            break
        if finished_trials(study) >= n_trials:
            break
        trial = study.ask()
        handle = TrialHandle(trial, suggest(trial, space), pruner or optuna.pruners.NopPruner())
        try:
            metrics = objective(handle)
            values = [metrics[goal.metric] for goal in goals]
        except optuna.TrialPruned as exc:
            study.tell(trial, state=TrialState.PRUNED)
            outcome = Outcome(trial.number, TrialState.PRUNED, None, str(exc))
        except KeyboardInterrupt:
            study.tell(trial, state=TrialState.FAIL)
            raise
        except Exception as exc:
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}")
            study.tell(trial, state=TrialState.FAIL)
            outcome = Outcome(trial.number, TrialState.FAIL, None, f"{type(exc).__name__}: {exc}")
        else:
            for constraint in constraints:
                trial.set_constraint(str(constraint), constraint.violation(metrics))
            study.tell(trial, values)
            shown = ", ".join(f"{g.metric} {v:.4g}" for g, v in zip(goals, values, strict=True))
            outcome = Outcome(trial.number, TrialState.COMPLETE, values, shown)
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)
    return outcomes
