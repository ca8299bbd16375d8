"""A study's results as a pandas DataFrame: one row per trial, from its Optuna storage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from kdsweep.run.locations import RunOptions
from kdsweep.run.stored import stored_study
from kdsweep.study.load import load_study
from kdsweep.study.study import Study


def trials_frame(
    optuna_study: Any, objectives: tuple[str, ...] = ("val_accuracy",)
) -> pd.DataFrame:
    """Every trial: number, state, worker, duration, searched params (dotted names),
    recorded metrics, whether it is on the Pareto front, and the failure reason if any."""
    front = {t.number for t in _best_trials(optuna_study)}
    rows = []
    for trial in optuna_study.get_trials(deepcopy=False):
        duration = (
            (trial.datetime_complete - trial.datetime_start).total_seconds()
            if trial.datetime_complete and trial.datetime_start
            else None
        )
        rows.append(
            {
                "trial": trial.number,
                "state": trial.state.name,
                "worker": trial.user_attrs.get("worker"),
                "duration_s": duration,
                **trial.params,
                **trial.user_attrs.get("metrics", {}),
                "pareto": trial.number in front,
                "fail_reason": trial.user_attrs.get("fail_reason"),
            }
        )
    frame = pd.DataFrame(rows)
    if frame.empty:
        frame = pd.DataFrame(
            columns=["trial", "state", "worker", "duration_s", *objectives, "pareto", "fail_reason"]
        )
    return frame.set_index("trial").sort_index()


def _best_trials(optuna_study: Any) -> list[Any]:
    try:
        return list(optuna_study.best_trials)
    except ValueError:  # no complete trial yet
        return []


def load_results(study: Study | str | Path, results: str | None = None) -> pd.DataFrame:
    """The trials of a study as a DataFrame.

    :param study: a loaded :class:`~kdsweep.study.Study` or a study file's path.
    :param results: the results folder, when it is not the study file's (or ``./results``).

    >>> frame = load_results("studies/digits.toml")  # doctest: +SKIP
    >>> frame[frame.pareto][["student.width", "val_accuracy", "params"]]  # doctest: +SKIP
    """
    study = study if isinstance(study, Study) else load_study(study)
    return trials_frame(stored_study(study, RunOptions(results=results)), objective_names(study))


def objective_names(study: Study) -> tuple[str, ...]:
    """The metrics the study optimises, in order."""
    return tuple(goal.metric for goal in study.settings.objectives)
