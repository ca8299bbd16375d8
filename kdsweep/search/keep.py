"""Which complete trials a study keeps the students of (``[study] keep``): the Pareto
front and the best trial per width (``front``), the best per width only (``best``),
every complete trial (``all``) or none.

A trial dominated once stays dominated, and a trial beaten at its width stays beaten:
deciding when a trial ends, against the trials complete by then, never drops a student
the end of the study would keep. Students decided so that later fall off are removed at
the end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from optuna.trial import TrialState

from kdsweep.study.goals import Goal


@dataclass(frozen=True)
class Scored:
    """A complete trial as the keep policy sees it."""

    number: int
    values: tuple[float, ...]  # in the order of the study's objectives
    width: float
    feasible: bool = True  # every constraint met (only feasible trials form the front)


def kept(scored: Iterable[Scored], goals: Sequence[Goal], policy: str) -> set[int]:
    """Numbers of the trials ``policy`` keeps among ``scored``."""
    trials = list(scored)
    if policy == "none":
        return set()
    if policy == "all":
        return {t.number for t in trials}
    best = {t.number for t in best_per_width(trials, goals).values()}
    if policy == "best":
        return best
    return best | {t.number for t in pareto_front(trials, goals)}


def best_per_width(trials: Iterable[Scored], goals: Sequence[Goal]) -> dict[float, Scored]:
    """The best trial of each width by the first objective (the earlier one on a tie)."""
    best: dict[float, Scored] = {}
    for trial in sorted(trials, key=lambda t: (_signed(t, goals)[0], t.number)):
        best.setdefault(trial.width, trial)
    return best


def champion(trials: Iterable[Scored], goals: Sequence[Goal]) -> Scored | None:
    """The best trial of all by the first objective (the earlier one on a tie)."""
    return min(trials, key=lambda t: (_signed(t, goals)[0], t.number), default=None)


def pareto_front(trials: Iterable[Scored], goals: Sequence[Goal]) -> list[Scored]:
    """The feasible trials no other feasible trial dominates."""
    feasible = [t for t in trials if t.feasible]
    signed = {t.number: _signed(t, goals) for t in feasible}
    return [
        t
        for t in feasible
        if not any(_dominates(signed[o.number], signed[t.number]) for o in feasible)
    ]


def scored_trials(
    optuna_study: Any, width_of: Callable[[Mapping[str, Any]], float]
) -> list[Scored]:
    """The study's complete trials, scored; ``width_of`` maps a trial's params to its
    student width."""
    return [
        Scored(
            trial.number,
            tuple(trial.values),
            width_of(trial.params),
            all(v <= 0 for v in trial.system_attrs.get("constraints", ())),
        )
        for trial in optuna_study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    ]


def _signed(trial: Scored, goals: Sequence[Goal]) -> tuple[float, ...]:
    """Values turned so that smaller is better for every objective."""
    return tuple(
        -v if goal.direction == "maximize" else v
        for v, goal in zip(trial.values, goals, strict=True)
    )


def _dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(x <= y for x, y in zip(a, b, strict=True)) and a != b
