"""`kdsweep ui` and `kdsweep dashboard` as processes: they serve the study's stores,
stop with every process they started on SIGTERM or Ctrl-C (one line, no traceback), and
refuse a store that does not exist instead of creating an empty one."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient
from servers import alive, descendants, free_port, start, stop

from kdsweep.cli import main


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_ui_serves_the_store_and_stops_with_its_children(tmp_path: Path, sig) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(tracking_uri=uri).create_experiment("ui-study")
    port = free_port()
    process, url = start("ui", "--tracking-uri", uri, "--port", str(port), ready="/health")
    assert url == f"http://127.0.0.1:{port}"
    request = urllib.request.Request(
        f"{url}/api/2.0/mlflow/experiments/search",
        data=b'{"max_results": 10}',
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert "ui-study" in [e["name"] for e in json.load(response)["experiments"]]
    started = descendants(process.pid)
    assert started, "the MLflow server runs below kdsweep"
    _, errors = stop(process, sig)
    assert process.returncode == 130
    assert errors.strip().splitlines()[-1] == "kdsweep: MLflow UI stopped"
    assert "Traceback" not in errors
    deadline = time.monotonic() + 10
    while alive(started) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert alive(started) == set(), "processes left behind"


def test_ui_and_dashboard_refuse_a_store_that_does_not_exist(write_study, tmp_path, capsys) -> None:
    study = write_study()
    empty = tmp_path / "nothing-here"
    assert main(["ui", str(study), "--results", str(empty)]) == 2
    assert "no tracking store at" in capsys.readouterr().err
    assert main(["dashboard", str(study), "--results", str(empty)]) == 2
    assert "no Optuna storage at" in capsys.readouterr().err
    assert not empty.exists()


def test_dashboard_without_its_extra_names_it(write_study) -> None:
    study = write_study()
    code = (
        "import sys; sys.modules['optuna_dashboard'] = None; from kdsweep.cli import main; "
        f"sys.exit(main(['dashboard', {str(study)!r}]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 2
    assert 'pip install "kdsweep[dashboard]"' in done.stderr
