"""Where a study's results go, and the command line's overrides of the study file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kdsweep.study.study import Study

# The stores' URLs, read like --storage and --tracking-uri: worker processes get them so,
# a password stays off their command lines.
STORAGE_ENV = "KDSWEEP_STORAGE"
TRACKING_ENV = "KDSWEEP_TRACKING_URI"


@dataclass(frozen=True)
class RunOptions:
    """Command-line overrides of the study file (``None`` keeps the file's value)."""

    n_trials: int | None = None
    timeout: float | None = None
    storage: str | None = None
    tracking_uri: str | None = None
    device: str | None = None
    results: str | None = None
    workers: int = 1  # local worker processes; more than one needs a server database
    graceful: bool = False  # on the first SIGINT/SIGTERM, finish the running trial
    jobs: str | None = None  # trial-training processes, or "auto"


@dataclass(frozen=True)
class StudyLocations:
    """Where a study's results live: one folder holding both stores by default."""

    results: Path
    storage: str
    tracking_uri: str

    @classmethod
    def of(cls, study: Study, options: RunOptions) -> StudyLocations:
        """Command line over study file over defaults under the results folder."""
        results = Path(options.results or study.settings.results).resolve()
        return cls(
            results=results,
            storage=options.storage
            or study.settings.storage
            or f"sqlite:///{results / 'optuna.db'}",
            tracking_uri=options.tracking_uri
            or study.settings.tracking_uri
            or f"sqlite:///{results / 'mlflow.db'}",
        )

    @property
    def cache(self) -> Path:
        """The folder of trained teachers and baselines."""
        return self.results / "cache"
