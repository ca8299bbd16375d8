"""What a run of a study produced: the teacher, the baselines, the best trial per width,
the trial states and the Pareto front."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from optuna.trial import TrialState

from kdsweep.run.locations import StudyLocations
from kdsweep.search.trial import Outcome
from kdsweep.study.study import Study
from kdsweep.train.references import ModelRecord


@dataclass(frozen=True)
class TrialRecord:
    """A finished trial as the summary shows it."""

    number: int
    width: float
    params: dict[str, Any]
    val_accuracy: float
    test_accuracy: float
    n_params: int
    train_time_s: float


@dataclass(frozen=True)
class StudySummary:
    """What a run of a study produced."""

    locations: StudyLocations | None
    teacher: ModelRecord | None
    baselines: dict[float, ModelRecord]
    best: dict[float, TrialRecord]  # best complete trial (primary objective) per width
    states: dict[str, int] = field(default_factory=dict)
    pareto: list[int] = field(default_factory=list)  # trial numbers on the Pareto front
    outcomes: list[Outcome] = field(default_factory=list)  # how this run's trials ended

    @property
    def finished_now(self) -> int:
        """Trials this run finished (complete or pruned)."""
        return sum(o.state in (TrialState.COMPLETE, TrialState.PRUNED) for o in self.outcomes)


def best_per_width(optuna_study: Any, study: Study) -> dict[float, TrialRecord]:
    """The best complete trial of each student width, by the study's first objective."""
    primary = study.settings.objectives[0]
    complete = optuna_study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    complete.sort(key=lambda t: t.values[0], reverse=primary.direction == "maximize")
    best: dict[float, TrialRecord] = {}
    for t in complete:
        width = study.width_of(t.params)
        if width not in best:
            metrics = t.user_attrs.get("metrics", {})
            best[width] = TrialRecord(
                number=t.number,
                width=width,
                params=dict(t.params),
                val_accuracy=metrics.get("val_accuracy", math.nan),
                test_accuracy=metrics.get("test_accuracy", math.nan),
                n_params=int(metrics.get("params", 0)),
                train_time_s=metrics.get("train_time_s", math.nan),
            )
    return best


def summarise(
    optuna_study: Any,
    study: Study,
    locations: StudyLocations,
    references: tuple[ModelRecord | None, dict[float, ModelRecord]],
    outcomes: list[Outcome],
) -> StudySummary:
    """The summary of the study as its storage holds it now; ``references`` are the
    teacher (if any) and the baselines by width, ``outcomes`` this run's trials."""
    states: dict[str, int] = {}
    for trial in optuna_study.get_trials(deepcopy=False):
        states[trial.state.name] = states.get(trial.state.name, 0) + 1
    best = best_per_width(optuna_study, study)
    pareto = sorted(t.number for t in optuna_study.best_trials) if best else []
    teacher, baselines = references
    return StudySummary(locations, teacher, baselines, best, states, pareto, list(outcomes))
