"""Kept students as MLflow logged models: logged from a trial's run, listed, deleted
(model and artifacts), and registered in the Model Registry under an alias.

The model itself is opaque here (an ``nn.Module`` for ``mlflow.pytorch``); the caller
gives the input and output examples as NumPy arrays.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdsweep.track.tags import ROLE, STUDY, TRIAL_NUMBER
from kdsweep.track.tracker import Tracker

MODEL_NAME = "student"  # the logged model's name in the MLflow UI
MODEL_TYPE = "kdsweep-student"
WEIGHTS_FILE = "weights.safetensors"  # beside MLflow's pickled model: loads without pickle
CHAMPION = "champion"  # the Model Registry alias of the study's best student


@dataclass(frozen=True)
class StudentModel:
    """A kept student: the logged model and the trial it came from."""

    model_id: str
    trial: int
    run_id: str
    artifact_location: str

    @property
    def uri(self) -> str:
        """The model's MLflow URI (``models:/<id>``), e.g. for ``mlflow.pytorch.load_model``."""
        return f"models:/{self.model_id}"


@dataclass(frozen=True)
class StudentRecord:
    """What is logged with a student besides its weights."""

    trial: int
    run_id: str
    params: Mapping[str, Any]
    tags: Mapping[str, str]
    pip_requirements: tuple[str, ...]


def log_student(
    tracker: Tracker,
    model: Any,
    weights_file: Path,
    examples: tuple[Any, Any],
    record: StudentRecord,
) -> StudentModel:
    """Log ``model`` (an ``nn.Module`` in eval mode) as a logged model of the trial's run:
    signature and input example from ``examples`` (input, output arrays), the trial's
    params and ``weights_file`` beside it. The run's final metrics link to the model when
    they are logged with its id (:meth:`Tracker.end_run`)."""
    import mlflow
    import mlflow.pytorch
    from mlflow.entities import LoggedModelOutput
    from mlflow.models import infer_signature

    client = tracker.client
    created = client.create_logged_model(
        tracker.experiment_id,
        name=MODEL_NAME,
        source_run_id=record.run_id,
        tags={
            ROLE: "student",
            STUDY: tracker.study_name,
            TRIAL_NUMBER: str(record.trial),
            **record.tags,
        },
        params={key: str(value) for key, value in record.params.items()},
        model_type=MODEL_TYPE,
    )
    sample_input, sample_output = examples
    with _fluent_mlflow(tracker.tracking_uri):
        mlflow.pytorch.log_model(
            model,
            name=MODEL_NAME,
            model_id=created.model_id,
            signature=infer_signature(sample_input, sample_output),
            input_example=sample_input,
            pip_requirements=list(record.pip_requirements),
            extra_files=[str(weights_file)],
            serialization_format="pickle",  # the plugin's own class, as trained
        )
    client.log_outputs(record.run_id, [LoggedModelOutput(created.model_id, step=0)])
    return StudentModel(
        created.model_id, record.trial, record.run_id, _artifacts(client, created.model_id)
    )


def student_models(tracker: Tracker) -> list[StudentModel]:
    """Every kept student of the study (MLflow's search leaves deleted ones out)."""
    found, token = [], None
    while True:
        page = tracker.client.search_logged_models(
            [tracker.experiment_id],
            filter_string=f"tags.`{ROLE}` = 'student' AND tags.`{STUDY}` = '{tracker.study_name}'",
            page_token=token,
        )
        found += [
            StudentModel(
                m.model_id, int(m.tags[TRIAL_NUMBER]), m.source_run_id, m.artifact_location
            )
            for m in page
        ]
        token = page.token
        if not token:
            return found


def delete_student(tracker: Tracker, student: StudentModel) -> None:
    """Delete the logged model and its artifacts (its weights leave the disk)."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    tracker.client.delete_logged_model(student.model_id)
    with contextlib.suppress(FileNotFoundError):  # deleted already (another worker)
        get_artifact_repository(student.artifact_location).delete_artifacts()


def download_weights(student: StudentModel, folder: Path) -> Path:
    """The student's weights file, downloaded into ``folder``."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    _no_progress_bars()
    repository = get_artifact_repository(student.artifact_location)
    return Path(repository.download_artifacts(f"extra_files/{WEIGHTS_FILE}", str(folder)))


def register_champion(tracker: Tracker, name: str, student: StudentModel) -> str:
    """Register the student under ``name`` (created if new) and point the ``champion``
    alias at it; a student registered before keeps its version. Returns the version."""
    client = tracker.client
    version = _registered_version(tracker, name, student)
    client.set_registered_model_alias(name, CHAMPION, version)
    return version


def _registered_version(tracker: Tracker, name: str, student: StudentModel) -> str:
    from mlflow.exceptions import MlflowException

    client = tracker.client
    with contextlib.suppress(MlflowException):  # it exists (an earlier run, another worker)
        client.create_registered_model(name, tags={STUDY: tracker.study_name})
    for version in client.search_model_versions(f"name = '{name}'"):
        if version.source == student.uri:
            return version.version
    with _fluent_mlflow(tracker.tracking_uri):  # it resolves models:/ so
        created = client.create_model_version(
            name,
            source=student.uri,
            run_id=student.run_id,
            model_id=student.model_id,
            tags={TRIAL_NUMBER: str(student.trial)},
        )
    return created.version


def _artifacts(client: Any, model_id: str) -> str:
    return client.get_logged_model(model_id).artifact_location


PROGRESS_BARS = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
# One thread at a time sets MLflow's process-wide tracking URI and its loggers' levels:
# a second thread's restore would otherwise undo the first's while it still logs.
_FLUENT = threading.Lock()
_QUIETED = ("mlflow.pytorch", "mlflow.store", "mlflow")


@contextmanager
def _fluent_mlflow(uri: str) -> Iterator[None]:
    """For MLflow's fluent model logging, which reads the process-wide tracking URI: that
    URI set (MLflow's own context puts back exactly what was there, so a user's
    ``MLFLOW_TRACKING_URI`` keeps working), its notes on pickled models and registry
    waits silenced (not the user's business), no download bars."""
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    _no_progress_bars()
    loggers = [logging.getLogger(name) for name in _QUIETED]
    with _FLUENT, _use_tracking_uri(uri):
        levels = [logger.level for logger in loggers]
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


def _no_progress_bars() -> None:
    """No download bars among kdsweep's lines (unless the user asked for them)."""
    os.environ.setdefault(PROGRESS_BARS, "false")
