"""A study's results as a pandas DataFrame: one row per trial, from its Optuna storage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from optuna.trial import TrialState

from kdsweep.run.locations import RunOptions
from kdsweep.run.stored import stored_study
from kdsweep.search.pruners import EPOCH_VALUES
from kdsweep.study.load import load_study
from kdsweep.study.study import Study


def trials_frame(
    optuna_study: Any, objectives: tuple[str, ...] = ("val_accuracy",)
) -> pd.DataFrame:
    """Every trial: number, state, worker, duration, searched params (dotted names),
    recorded metrics (a pruned trial: its last epoch's validation accuracy, and the epoch
    in ``pruned_at_epoch``), whether it is on the Pareto front, why it was pruned or
    failed, and its components' names, plugins and versions (``component.<role>...``)."""
    front = {t.number for t in _best_trials(optuna_study)}
    rows = []
    for trial in optuna_study.get_trials(deepcopy=False):
        duration = (
            (trial.datetime_complete - trial.datetime_start).total_seconds()
            if trial.datetime_complete and trial.datetime_start
            else None
        )
        curve = epoch_curve(trial)
        stopped = {}
        if trial.state == TrialState.PRUNED and curve:
            last = max(curve)
            stopped = {"val_accuracy": curve[last], "pruned_at_epoch": last}
        rows.append(
            {
                "trial": trial.number,
                "state": trial.state.name,
                "worker": trial.user_attrs.get("worker"),
                "duration_s": duration,
                **trial.params,
                **trial.user_attrs.get("metrics", {}),
                **stopped,
                "pareto": trial.number in front,
                "prune_reason": trial.user_attrs.get("prune_reason"),
                "fail_reason": trial.user_attrs.get("fail_reason"),
                **{
                    f"component.{key.removeprefix('kdsweep.')}": value
                    for key, value in trial.user_attrs.get("components", {}).items()
                },
            }
        )
    frame = pd.DataFrame(rows)
    if frame.empty:
        frame = pd.DataFrame(
            columns=["trial", "state", "worker", "duration_s", *objectives, "pareto", "fail_reason"]
        )
    return frame.set_index("trial").sort_index()


def epoch_curve(trial: Any) -> dict[int, float]:
    """The trial's validation accuracy per epoch (epoch -> value)."""
    if trial.intermediate_values:
        return dict(trial.intermediate_values)
    return {int(k): v for k, v in trial.user_attrs.get(EPOCH_VALUES, {}).items()}


def curves_frame(optuna_study: Any) -> pd.DataFrame:
    """Every trial's per-epoch validation accuracy, one row per (trial, epoch)."""
    rows = [
        {"trial": t.number, "state": t.state.name, "epoch": epoch, "val_accuracy": value}
        for t in optuna_study.get_trials(deepcopy=False)
        for epoch, value in sorted(epoch_curve(t).items())
    ]
    return pd.DataFrame(rows, columns=["trial", "state", "epoch", "val_accuracy"])


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


def load_curves(study: Study | str | Path, results: str | None = None) -> pd.DataFrame:
    """Per-epoch validation accuracy of every trial, in long format (trial, state, epoch,
    val_accuracy).

    >>> curves = load_curves("studies/digits.toml")  # doctest: +SKIP
    >>> curves.pivot(index="epoch", columns="trial", values="val_accuracy").plot()  # doctest: +SKIP
    """
    study = study if isinstance(study, Study) else load_study(study)
    return curves_frame(stored_study(study, RunOptions(results=results)))


def objective_names(study: Study) -> tuple[str, ...]:
    """The metrics the study optimises, in order."""
    return tuple(goal.metric for goal in study.settings.objectives)
