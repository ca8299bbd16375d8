"""The Optuna study of a kdsweep study: created or resumed, and counted."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState

from kdsweep.search.storage import make_storage
from kdsweep.study.study import StudySettings

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def open_study(
    settings: StudySettings, storage: str, sampler: optuna.samplers.BaseSampler
) -> optuna.Study:
    """Create the study, or load it when it exists (so a rerun resumes it); its objectives
    carry the metrics' names (Optuna's dashboard shows them)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=settings.name,
        storage=make_storage(storage),
        sampler=sampler,
        pruner=optuna.pruners.NopPruner(),  # kdsweep prunes per width: search.pruners
        directions=[goal.direction for goal in settings.objectives],
        load_if_exists=True,
    )
    names = [goal.metric for goal in settings.objectives]
    if study.metric_names != names:
        study.set_metric_names(names)
    return study


def create_optuna_schema(url: str) -> None:
    """Create Optuna's tables in the (new, empty) database at ``url``."""
    optuna.storages.RDBStorage(url).engine.dispose()


def load_existing(name: str, storage: str) -> optuna.Study | None:
    """The study ``name`` in ``storage`` for reading, or ``None`` if it has none (a SQLite
    file that does not exist is not created)."""
    if storage.startswith("sqlite:///") and not Path(storage.removeprefix("sqlite:///")).is_file():
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


def finished_trials(study: optuna.Study) -> int:
    """Trials that count towards ``n_trials``: complete or pruned."""
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def state_counts(study: optuna.Study) -> dict[str, int]:
    """How many trials are finished, running and waiting."""
    trials = study.get_trials(deepcopy=False)
    return {
        "finished": sum(t.state in FINISHED for t in trials),
        "running": sum(t.state == TrialState.RUNNING for t in trials),
        "waiting": sum(t.state == TrialState.WAITING for t in trials),
    }


def is_surplus(study: optuna.Study, number: int, n_trials: int) -> bool:
    """Whether ``n_trials`` trials that did not fail precede trial ``number``."""
    if number < n_trials:
        return False  # fewer than n_trials trials of any state precede it
    alive = (*FINISHED, TrialState.RUNNING)
    earlier = [t for t in study.get_trials(deepcopy=False, states=alive) if t.number < number]
    return len(earlier) >= n_trials


def study_id(storage: str, name: str) -> int | None:
    """The storage's id of study ``name`` (optuna-dashboard's URLs use it), if it has one."""
    try:
        return optuna.storages.get_storage(storage).get_study_id_from_name(name)
    except KeyError:
        return None
