"""Many workers on one study against a real PostgreSQL server on 127.0.0.1, and a worker
killed with SIGKILL; SQLite with one worker killed and resumed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import psycopg
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState
from recorded import trial_runs

SERVER = "postgresql://postgres@127.0.0.1:5432"
FAST_HEARTBEAT = {"KDSWEEP_HEARTBEAT_S": "1", "KDSWEEP_GRACE_S": "4"}


def _study(write_study, n_trials: int, epochs: int) -> Path:
    """The distributed tests' study: no baselines, no pruning, ``epochs`` per trial."""
    return write_study(
        name="distributed",
        n_trials=n_trials,
        search="temperature = { low = 1.0, high = 8.0 }",
        study={"baseline": False, "seed": None},
        teacher={"epochs": 2},
        train={"epochs": epochs, "batch_size": 256, "lr": None},
        schedule=None,
    )


def _admin(postgres: str, sql: str) -> None:
    connection = psycopg.connect(postgres)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(sql)
    connection.close()


@pytest.fixture
def databases(postgres: str):
    """Two fresh PostgreSQL databases: (Optuna URL, MLflow URL); dropped afterwards."""
    names = [f"kdsweep_{kind}_{uuid.uuid4().hex[:10]}" for kind in ("optuna", "mlflow")]
    for name in names:
        _admin(postgres, f"CREATE DATABASE {name}")
    yield tuple(f"{SERVER}/{name}" for name in names)
    for name in names:
        _admin(postgres, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _worker(
    study: Path, storage: str, tracking: str, results: Path, *extra: str, env: dict | None = None
) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kdsweep",
            "worker",
            str(study),
            "--storage",
            storage,
            "--tracking-uri",
            tracking,
            "--results",
            str(results),
            *extra,
        ],
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _trial_runs(tracking: str) -> list:
    return trial_runs(tracking, "distributed")


def _wait_for_running(storage: str, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            study = optuna.load_study(study_name="distributed", storage=storage)
            running = [t for t in study.trials if t.state == TrialState.RUNNING]
            if running and running[0].user_attrs.get("epoch_val_accuracy"):
                return running[0].number
        except KeyError:
            pass
        time.sleep(0.3)
    raise AssertionError("no trial started")


def test_three_workers_finish_exactly_n_trials(databases, tmp_path, write_study) -> None:
    storage, tracking = databases
    study = _study(write_study, n_trials=6, epochs=2)
    workers = [_worker(study, storage, tracking, tmp_path / "r") for _ in range(3)]
    for worker in workers:
        _, errors = worker.communicate(timeout=300)
        assert worker.returncode == 0, errors[-2000:]
    trials = optuna.load_study(study_name="distributed", storage=storage).trials
    complete = [t.number for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 6 and len(set(complete)) == 6
    assert all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in trials)
    sampled = [t.params["loss.temperature"] for t in trials if t.state == TrialState.COMPLETE]
    assert len(set(sampled)) == 6  # each worker samples from its own random stream
    runs = _trial_runs(tracking)
    numbers = sorted(int(r.data.tags["kdsweep.trial_number"]) for r in runs)
    assert numbers == sorted(complete)  # exactly one MLflow run per trial
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {
        r.info.run_id
        for r in MlflowClient(tracking_uri=tracking).search_runs(
            [runs[0].info.experiment_id], "tags.`kdsweep.role` = 'study'"
        )
    }


def test_students_kept_by_two_workers_export_alike(databases, tmp_path, write_study) -> None:
    """Each worker logs the students of the trials it trained; any process exports them
    from the shared stores, reproducing each trial's recorded test accuracy."""
    import torch
    from kdsweep_builtins.datasets import load_digits

    import kdsweep

    storage, tracking = databases
    study = write_study(
        name="distributed",
        n_trials=4,
        search="temperature = { low = 1.0, high = 8.0 }",
        study={"baseline": False, "seed": None, "keep": "all"},
        teacher={"epochs": 2},
        train={"epochs": 2, "batch_size": 256, "lr": None},
        schedule=None,
    )
    workers = [_worker(study, storage, tracking, tmp_path / "r") for _ in range(2)]
    for worker in workers:
        _, errors = worker.communicate(timeout=300)
        assert worker.returncode == 0, errors[-2000:]
    trials = optuna.load_study(study_name="distributed", storage=storage).trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 4
    data = load_digits()
    for trial in complete:
        student = kdsweep.load_student(
            study, trial.number, results=tmp_path / "r", storage=storage, tracking_uri=tracking
        )
        with torch.no_grad():
            predicted = student(data.test_x).argmax(dim=1)
        accuracy = (predicted == data.test_y).float().mean().item()
        assert accuracy == trial.user_attrs["metrics"]["test_accuracy"], trial.number


def test_a_killed_worker_loses_nothing(databases, tmp_path, write_study) -> None:
    storage, tracking = databases
    study = _study(write_study, n_trials=3, epochs=40)
    doomed = _worker(study, storage, tracking, tmp_path / "r", env=FAST_HEARTBEAT)
    killed = _wait_for_running(storage)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    survivor = _worker(study, storage, tracking, tmp_path / "r", env=FAST_HEARTBEAT)
    _, errors = survivor.communicate(timeout=300)
    assert survivor.returncode == 0, errors[-2000:]
    trials = optuna.load_study(study_name="distributed", storage=storage).trials
    assert trials[killed].state == TrialState.FAIL
    retries = [
        t
        for t in trials
        if optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == killed
    ]
    assert len(retries) == 1 and retries[0].params == trials[killed].params
    assert retries[0].state == TrialState.COMPLETE
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 3
    runs = {int(r.data.tags["kdsweep.trial_number"]): r for r in _trial_runs(tracking)}
    assert runs[retries[0].number].data.tags["kdsweep.retry_of"] == str(killed)
    assert killed in runs  # the killed trial's run (and its epochs so far) is kept
    assert all(
        runs[t.number].info.status == "FINISHED" for t in trials if t.state == TrialState.COMPLETE
    )


def test_sqlite_single_worker_killed_then_resumed(tmp_path, write_study) -> None:
    study = _study(write_study, n_trials=3, epochs=40)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = _worker(study, storage, tracking, tmp_path / "r", env=FAST_HEARTBEAT)
    killed = _wait_for_running(storage)
    first.send_signal(signal.SIGKILL)
    first.wait()
    again = _worker(study, storage, tracking, tmp_path / "r", env=FAST_HEARTBEAT)
    _, errors = again.communicate(timeout=300)
    assert again.returncode == 0, errors[-2000:]
    trials = optuna.load_study(study_name="distributed", storage=storage).trials
    assert trials[killed].state == TrialState.FAIL
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 3


def test_sigterm_stops_cleanly(tmp_path, write_study) -> None:
    study = _study(write_study, n_trials=3, epochs=40)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    worker = _worker(study, storage, tracking, tmp_path / "r")
    running = _wait_for_running(storage)
    worker.send_signal(signal.SIGTERM)
    worker.communicate(timeout=120)
    assert worker.returncode == 130
    trial = optuna.load_study(study_name="distributed", storage=storage).trials[running]
    assert trial.state == TrialState.FAIL and trial.user_attrs["fail_reason"] == "interrupted"
    (run,) = [
        r for r in _trial_runs(tracking) if r.data.tags["kdsweep.trial_number"] == str(running)
    ]
    assert run.info.status == "KILLED"


def test_sigterm_with_jobs_fails_the_trials_started_ahead_too(tmp_path, write_study) -> None:
    """With jobs, each thread has started its next trial before the running one ends:
    those fail as interrupted as well, with their runs KILLED; none is left running."""
    study = _study(write_study, n_trials=8, epochs=400)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    worker = _worker(study, storage, tracking, tmp_path / "r", "--jobs", "2")
    _wait_for_running(storage)
    deadline = time.monotonic() + 60
    while len(optuna.load_study(study_name="distributed", storage=storage).trials) < 4:
        assert time.monotonic() < deadline, "the threads did not start their next trials"
        time.sleep(0.3)
    worker.send_signal(signal.SIGTERM)
    _, errors = worker.communicate(timeout=120)
    assert worker.returncode == 130, errors[-2000:]
    trials = optuna.load_study(study_name="distributed", storage=storage).trials
    assert len(trials) == 4  # two training, two started ahead
    assert {t.state for t in trials} == {TrialState.FAIL}
    assert {t.user_attrs["fail_reason"] for t in trials} == {"interrupted"}
    assert {r.info.status for r in _trial_runs(tracking)} == {"KILLED"}
    assert len(_trial_runs(tracking)) == 4


def test_graceful_stop_finishes_the_running_trial(tmp_path, write_study) -> None:
    study = _study(write_study, n_trials=5, epochs=25)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    worker = _worker(study, storage, tracking, tmp_path / "r", "--graceful")
    running = _wait_for_running(storage)
    worker.send_signal(signal.SIGTERM)
    _, errors = worker.communicate(timeout=120)
    assert worker.returncode == 0, errors[-2000:]
    trials = optuna.load_study(study_name="distributed", storage=storage).trials
    assert trials[running].state == TrialState.COMPLETE
    assert len(trials) == running + 1  # no trial started after the signal


def test_run_starts_local_workers(databases, tmp_path, write_study) -> None:
    storage, tracking = databases
    study = _study(write_study, n_trials=4, epochs=2)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "kdsweep",
            "run",
            str(study),
            "--workers",
            "2",
            "--storage",
            storage,
            "--tracking-uri",
            tracking,
            "--results",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    trials = optuna.load_study(study_name="distributed", storage=storage).trials
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 4
    assert done.stderr.count("starting 2 worker processes") == 1


def test_run_refuses_several_workers_on_sqlite(tmp_path, capsys, write_study) -> None:
    from kdsweep.cli import main

    study = _study(write_study, n_trials=4, epochs=2)
    assert main(["run", str(study), "--workers", "2", "--results", str(tmp_path)]) == 2
    assert "needs a database server" in capsys.readouterr().err
