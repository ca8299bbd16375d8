"""What the MLflow UI shows first: the experiment marked as model training, a shared
view of the runs table (trial runs, the columns that matter, best first) that
``kdsweep ui`` opens directly, and the study's summary as the experiment's description.

The view is MLflow's own shared-view mechanism: an experiment tag
``mlflow.sharedViewState.<key>`` holding the runs page's state, opened with
``?viewStateShareKey=<key>`` (MLflow 3 UI; checked against 3.17 and 3.18).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from urllib.parse import quote

from kdsweep.track.tags import ROLE
from kdsweep.track.tracker import Tracker

EXPERIMENT_KIND = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"  # MLflow then offers its training-runs views
DESCRIPTION = "mlflow.note.content"  # the experiment's Markdown description
VIEW_KEY = "kdsweep"
SHARED_VIEW = f"mlflow.sharedViewState.{VIEW_KEY}"


def column(kind: str, name: str) -> str:
    """A runs-table column as MLflow's UI names it: ``metrics.`val_accuracy```."""
    return f"{kind}.`{name}`"


def set_runs_view(
    tracker: Tracker,
    params: Sequence[str],
    metrics: Sequence[str],
    order_by: str,
    ascending: bool = False,
) -> None:
    """Mark the experiment as model training and store the runs view: trial runs only,
    ``params`` and ``metrics`` as columns, sorted by ``order_by``."""
    state = {
        "searchFilter": f"tags.`{ROLE}` = 'trial'",
        "orderByKey": column("metrics", order_by),
        "orderByAsc": ascending,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "datasetsFilter": [],
        "modelVersionFilter": "All Runs",
        "selectedColumns": [
            *(column("params", p) for p in params),
            *(column("metrics", m) for m in metrics),
        ],
    }
    _set_tag(tracker, EXPERIMENT_KIND, MODEL_TRAINING)
    _set_tag(tracker, SHARED_VIEW, json.dumps(state))


def describe(tracker: Tracker, markdown: str) -> None:
    """The experiment's description (shown above its runs in the UI)."""
    _set_tag(tracker, DESCRIPTION, markdown)


def _set_tag(tracker: Tracker, key: str, value: str) -> None:
    """Set an experiment tag; workers starting together may insert the same new tag at
    once, and MLflow's insert-or-update then fails for all but one: the others try
    again, now updating it."""
    from mlflow.exceptions import MlflowException

    client, experiment = tracker.client, tracker.experiment_id
    try:
        client.set_experiment_tag(experiment, key, value)
    except MlflowException:
        if client.get_experiment(experiment).tags.get(key) != value:
            client.set_experiment_tag(experiment, key, value)


def runs_url(server: str, experiment_id: str) -> str:
    """The address of the experiment's runs view on an MLflow server."""
    base = f"{server.rstrip('/')}/#/experiments/{quote(experiment_id)}/runs"
    return f"{base}?viewStateShareKey={VIEW_KEY}"
