"""No store password on a command line: worker processes and the MLflow UI get the URLs
through their environment (``ps`` shows command lines to every user)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mlflow import MlflowClient
from servers import descendants

from kdsweep.run.locations import STORAGE_ENV, TRACKING_ENV, RunOptions
from kdsweep.run.plan import prepare
from kdsweep.run.workers import worker_command
from kdsweep.study.load import load_study

SECRET = "postgresql://kd:TopSecret@127.0.0.1:5432/test"


def test_worker_command_lines_hold_no_store_url(write_study, tmp_path) -> None:
    study = load_study(write_study())
    options = RunOptions(storage=SECRET, tracking_uri=SECRET, workers=2, device="cpu")
    plan = prepare(study, options)
    command = worker_command(plan, options)
    assert not any("TopSecret" in part or "postgresql" in part for part in command)
    assert plan.locations.storage == SECRET  # they travel as KDSWEEP_STORAGE instead
    assert (STORAGE_ENV, TRACKING_ENV) == ("KDSWEEP_STORAGE", "KDSWEEP_TRACKING_URI")


def test_the_worker_reads_its_stores_from_the_environment(write_study, tmp_path) -> None:
    study = write_study(n_trials=1, search="")
    storage = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    env = {**os.environ, STORAGE_ENV: storage, TRACKING_ENV: f"sqlite:///{tmp_path / 'm.db'}"}
    done = subprocess.run(
        [sys.executable, "-m", "kdsweep", "worker", str(study), "--results", str(tmp_path / "r")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "elsewhere.db").is_file() and (tmp_path / "m.db").is_file()
    assert not (tmp_path / "r" / "optuna.db").exists()


def test_the_ui_gets_its_store_through_the_environment(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(tracking_uri=uri).search_experiments()  # a store that exists
    process = subprocess.Popen(
        [sys.executable, "-m", "kdsweep", "ui", "--port", "0"],
        env={**os.environ, TRACKING_ENV: uri},  # as a password-holding URI would be given
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline, seen = time.monotonic() + 60, []
        while time.monotonic() < deadline and not seen:
            seen = [pid for pid in descendants(process.pid) if b"mlflow" in _cmdline(pid)]
            time.sleep(0.2)
        assert seen, "the MLflow UI did not start"
        for pid in [process.pid, *descendants(process.pid)]:
            assert str(tmp_path).encode() not in _cmdline(pid)
        assert f"MLFLOW_BACKEND_STORE_URI={uri}".encode() in _environ(seen[0])
    finally:
        os.kill(process.pid, signal.SIGTERM)  # it stops the server's process group
        process.wait(timeout=30)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _environ(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""
