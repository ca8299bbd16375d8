"""``kdsweep ui`` and ``kdsweep dashboard``: the MLflow UI on a study's runs view and
optuna-dashboard on its Optuna study, each served in its own process group."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from kdsweep.errors import KdsweepError
from kdsweep.run.locations import STORAGE_ENV, RunOptions, StudyLocations
from kdsweep.study.load import load_study


def cmd_ui(args: argparse.Namespace) -> int:
    """Serve the MLflow UI on the study's tracking store; print its runs view's address."""
    from kdsweep.cli.servers import serve

    study = load_study(args.study, args.plugin) if args.study else None
    if study is not None:
        options = RunOptions(results=args.results, tracking_uri=args.tracking_uri)
        uri = StudyLocations.of(study, options).tracking_uri
    else:
        uri = args.tracking_uri or f"sqlite:///{_results(args) / 'mlflow.db'}"
    _require_store(uri, "tracking store", args)
    server = f"http://{args.host}:{args.port}"
    url = _runs_url(uri, study.settings.name, server) if study else server
    command = [sys.executable, "-m", "mlflow", "ui", "--host", args.host, "--port", str(args.port)]
    # The store's URI goes through the environment: a password stays off the command line.
    return serve(command, {**os.environ, "MLFLOW_BACKEND_STORE_URI": uri}, "MLflow UI", url)


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Serve optuna-dashboard on the study's Optuna storage (the extra kdsweep[dashboard])."""
    from kdsweep.cli.servers import serve
    from kdsweep.search.study import study_id

    try:
        import optuna_dashboard  # noqa: F401
    except ImportError:
        raise KdsweepError(
            'kdsweep dashboard needs optuna-dashboard: pip install "kdsweep[dashboard]"'
        ) from None
    study = load_study(args.study, args.plugin)
    options = RunOptions(results=args.results, storage=args.storage)
    storage = StudyLocations.of(study, options).storage
    _require_store(storage, "Optuna storage", args)
    number = study_id(storage, study.settings.name)
    server = f"http://{args.host}:{args.port}"
    url = f"{server}/dashboard/studies/{number}" if number is not None else f"{server}/dashboard"
    # The storage URL goes through the environment, off the command line.
    run = (
        "import os, optuna_dashboard; optuna_dashboard.run_server("
        f"os.environ['{STORAGE_ENV}'], host={args.host!r}, port={args.port})"
    )
    command = [sys.executable, "-c", run]
    return serve(command, {**os.environ, STORAGE_ENV: storage}, "Optuna dashboard", url)


def _results(args: argparse.Namespace) -> Path:
    return Path(args.results or "results").resolve()


def _require_store(url: str, what: str, args: argparse.Namespace) -> None:
    """A SQLite store that does not exist is a mistake (a missing --results), not a new
    store to create empty."""
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        raise KdsweepError(
            f"no {what} at {url.removeprefix('sqlite:///')}: run the study first, or pass "
            "--results DIR as it ran"
        )


def _runs_url(tracking_uri: str, name: str, server: str) -> str:
    """The study's runs view on ``server``, or the server itself for an unknown study."""
    from mlflow import MlflowClient

    from kdsweep.track.views import runs_url

    experiment = MlflowClient(tracking_uri=tracking_uri).get_experiment_by_name(name)
    return runs_url(server, experiment.experiment_id) if experiment else server
