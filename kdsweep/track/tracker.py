"""A thin layer over MLflow: one experiment per study, one parent run per study, one
nested run per trial (and per teacher and baseline run). Metrics go out in batches.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kdsweep.text import redact_url
from kdsweep.track.tags import PARENT, ROLE, STUDY

MAX_PARAMS_PER_BATCH = 100
MAX_RUNS_PER_SEARCH = 50_000  # MLflow's limit for one search (its default is 1,000)
MAX_METRICS_PER_BATCH = 1000  # MLflow's limit for one log_batch
EPOCH_FLUSH_S = 10.0  # per-epoch series reach the store at least this often, and at the end


class Tracker:
    """Records a study in an MLflow tracking store."""

    def __init__(
        self,
        tracking_uri: str,
        study_name: str,
        artifact_root: Path | None = None,
        reopen: bool = True,
    ) -> None:
        """Open the study's experiment and parent run; ``reopen=False`` leaves an existing
        parent run's status alone (for reading, e.g. by ``kdsweep report``)."""
        from mlflow import MlflowClient  # imported here: MLflow is slow to import

        self.client = MlflowClient(tracking_uri=tracking_uri)
        self._pending: dict[str, list[Any]] = {}  # run id -> epoch metrics not yet sent
        self._flushed_at: dict[str, float] = {}
        self.tracking_uri = tracking_uri
        self.study_name = study_name
        experiment = self.client.get_experiment_by_name(study_name)
        if experiment is None:
            location = (artifact_root / study_name).resolve().as_uri() if artifact_root else None
            try:
                self.experiment_id = self.client.create_experiment(
                    study_name, artifact_location=location
                )
            except Exception:  # another worker created it first
                self.experiment_id = self.client.get_experiment_by_name(study_name).experiment_id
        else:
            if experiment.lifecycle_stage == "deleted":
                self.client.restore_experiment(experiment.experiment_id)
            self.experiment_id = experiment.experiment_id
        self.parent_id = self._study_run(reopen)

    def _study_run(self, reopen: bool) -> str:
        """The study's parent run: found by tag when it exists (resume), else created."""
        found = self.find_runs(role="study")
        if not found:
            created = self.client.create_run(
                self.experiment_id,
                run_name=self.study_name,
                tags={ROLE: "study", STUDY: self.study_name},
            )
            # Workers starting together may each create one: the oldest wins, others go.
            found = self.find_runs(role="study")
            winner = min(found, key=lambda r: (r.info.start_time, r.info.run_id))
            if winner.info.run_id != created.info.run_id:
                self.client.delete_run(created.info.run_id)
            found = [winner]
        run_id = found[0].info.run_id
        if reopen:
            self.client.update_run(run_id, status="RUNNING")
        return run_id

    def find_runs(self, role: str, **tags: str) -> list[Any]:
        """Runs of this study with ``kdsweep.role = role`` and the given extra tags."""
        clauses = [f"tags.`{ROLE}` = '{role}'", f"tags.`{STUDY}` = '{self.study_name}'"]
        clauses += [f"tags.`{key}` = '{value}'" for key, value in tags.items()]
        return list(
            self.client.search_runs(
                [self.experiment_id], " AND ".join(clauses), max_results=MAX_RUNS_PER_SEARCH
            )
        )

    def start_run(
        self, role: str, name: str, params: Mapping[str, Any], tags: Mapping[str, str]
    ) -> str:
        """A nested run under the study's run, with every setting as a param."""
        from mlflow.entities import Param

        run = self.client.create_run(
            self.experiment_id,
            run_name=name,
            tags={ROLE: role, STUDY: self.study_name, PARENT: self.parent_id, **tags},
        )
        items = [Param(key, str(value)) for key, value in sorted(params.items())]
        for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(
                run.info.run_id, params=items[start : start + MAX_PARAMS_PER_BATCH]
            )
        self._flushed_at[run.info.run_id] = time.time()
        return run.info.run_id

    def log(
        self,
        run_id: str,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """Metrics (at step 0) and tags, at once."""
        self._send(run_id, _metrics(metrics or {}, step=0), tags)

    def log_epoch(self, run_id: str, metrics: Mapping[str, float], step: int) -> None:
        """Per-epoch metrics, sent when ``EPOCH_FLUSH_S`` passed since the run's last write
        (its start, at first), the rest when the run ends. A short run then costs one store
        write for all its epochs; long ones still show up in the UI as they happen."""
        self._pending.setdefault(run_id, []).extend(_metrics(metrics, step))
        if time.time() - self._flushed_at.get(run_id, 0.0) >= EPOCH_FLUSH_S:
            self._send(run_id, self._pending.pop(run_id), None)
            self._flushed_at[run_id] = time.time()

    def _send(self, run_id: str, metrics: list[Any], tags: Mapping[str, str] | None) -> None:
        """Metrics and tags in as few ``log_batch`` calls as MLflow's limits allow."""
        from mlflow.entities import RunTag

        run_tags = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
        for start in range(0, max(len(metrics), 1), MAX_METRICS_PER_BATCH):
            batch = metrics[start : start + MAX_METRICS_PER_BATCH]
            if batch or (run_tags and start == 0):
                self.client.log_batch(run_id, metrics=batch, tags=run_tags if start == 0 else [])

    def end_run(
        self,
        run_id: str,
        status: str,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
        model_id: str | None = None,
    ) -> None:
        """Pending epoch metrics, final metrics and tags, then the run's status
        (``FINISHED``, ``KILLED`` for pruned or interrupted, ``FAILED``). The final
        metrics are linked to the logged model ``model_id``, if given."""
        final = _metrics(metrics or {}, step=0, model_id=model_id)
        self._send(run_id, self._pending.pop(run_id, []) + final, tags)
        self._flushed_at.pop(run_id, None)
        self.client.set_terminated(run_id, status=status)

    def log_artifacts(self, folder: Path, artifact_path: str) -> None:
        """Every file of ``folder`` on the study's run, under ``artifact_path``."""
        self.client.log_artifacts(self.parent_id, str(folder), artifact_path)

    def close(self, status: str = "FINISHED") -> None:
        """End the study's parent run."""
        self.client.set_terminated(self.parent_id, status=status)

    def __repr__(self) -> str:
        return f"Tracker({redact_url(self.tracking_uri)!r}, {self.study_name!r})"


def _metrics(values: Mapping[str, float], step: int, model_id: str | None = None) -> list[Any]:
    """MLflow metrics of ``values`` at ``step``, stamped now (and linked to a model)."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(k, float(v), now, step, model_id=model_id) for k, v in values.items()]


def create_mlflow_schema(url: str) -> None:
    """Create MLflow's tables in the (new, empty) database at ``url``."""
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=url).search_experiments(max_results=1)
