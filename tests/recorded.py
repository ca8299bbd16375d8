"""What a study left in its MLflow store, read back for assertions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlflow import MlflowClient


def trial_runs(tracking_uri: str, experiment_name: str) -> list[Any]:
    """The MLflow runs of the experiment's trials (``kdsweep.role = trial``)."""
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    return client.search_runs([experiment.experiment_id], "tags.`kdsweep.role` = 'trial'")


def student_models(tracking_uri: str, experiment_name: str) -> list[Any]:
    """The experiment's logged models of kept students (deleted ones left out)."""
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    return list(
        client.search_logged_models(
            [experiment.experiment_id], filter_string="tags.`kdsweep.role` = 'student'"
        )
    )


def weight_files(folder: Any) -> list[Any]:
    """Files under ``folder`` that hold a kept student's weights."""
    return [p for p in Path(folder).rglob("*") if p.name in ("model.pth", "weights.safetensors")]
