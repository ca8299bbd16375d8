"""A study's stores as a finished (or running) study left them, opened for reading."""

from __future__ import annotations

from typing import Any

from kdsweep.errors import KdsweepError
from kdsweep.run.locations import RunOptions, StudyLocations
from kdsweep.search.study import load_existing
from kdsweep.study.study import Study
from kdsweep.track.tracker import Tracker


def stored_study(study: Study, options: RunOptions | None = None) -> Any:
    """The study's Optuna study as its storage holds it; an error if it never ran.
    ``options`` may name the results folder and stores (as ``kdsweep run`` was given)."""
    locations = StudyLocations.of(study, options or RunOptions())
    stored = load_existing(study.settings.name, locations.storage)
    if stored is None:
        raise KdsweepError(
            f"{study.path}: study '{study.settings.name}' has no results in "
            f"{locations.results} yet: run it first"
        )
    return stored


def stored_tracker(study: Study, options: RunOptions | None = None) -> Tracker:
    """The study's MLflow records, for reading (the study run's status is left alone)."""
    locations = StudyLocations.of(study, options or RunOptions())
    return Tracker(locations.tracking_uri, study.settings.name, reopen=False)
