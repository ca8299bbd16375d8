"""The teacher trains on every core in the run's process; then, with jobs > 1, the
baselines train side by side in the trainer processes while the run opens its stores.
Each is recorded once and reused from the cache; Ctrl-C stops them at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mlflow import MlflowClient

from kdsweep.cli import main
from kdsweep.timeline import TIMELINE_ENV

SEARCH = "temperature = { low = 1.0, high = 8.0, log = true }\nwidth = { choices = [2, 4] }"


def _phases(path: Path) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        found.setdefault(row["phase"], []).append(row)
    return found


def _runs(results: Path, role: str) -> list:
    client = MlflowClient(tracking_uri=f"sqlite:///{results / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny")
    return client.search_runs([experiment.experiment_id], f"tags.`kdsweep.role` = '{role}'")


def _overlap(a: dict, b: dict) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


def test_with_jobs_baselines_train_in_trainers_while_the_stores_open(
    write_study, tmp_path: Path, monkeypatch
) -> None:
    timeline = tmp_path / "timeline.jsonl"
    monkeypatch.setenv(TIMELINE_ENV, str(timeline))
    path = write_study(n_trials=2, search=SEARCH, study_keys="jobs = 2")
    results = tmp_path / "results"
    assert main(["run", str(path), "--results", str(results)]) == 0

    phases = _phases(timeline)
    (teacher,), (stores,) = phases["teacher"], phases["stores"]
    baselines = phases["baseline"]
    assert len(baselines) == 2
    assert teacher["pid"] == stores["pid"] == os.getpid()
    assert teacher["end"] <= stores["start"]  # not while the teacher trains here
    assert os.getpid() not in {b["pid"] for b in baselines}
    assert len({b["pid"] for b in baselines}) == 2  # side by side, a trainer each
    assert all(_overlap(stores, b) for b in baselines)
    assert len(_runs(results, "teacher")) == 1 and len(_runs(results, "baseline")) == 2
    cache = results / "cache"
    assert len(list((cache / "teachers").glob("*.pt"))) == 1
    assert len(list((cache / "baselines").glob("*.pt"))) == 2

    timeline.unlink()
    assert main(["run", str(path), "--results", str(results), "--n-trials", "3"]) == 0
    again = _phases(timeline)
    assert "teacher" not in again and "baseline" not in again  # from the cache
    assert len(_runs(results, "teacher")) == 1 and len(_runs(results, "baseline")) == 2


def test_with_one_job_everything_trains_here(write_study, tmp_path: Path, monkeypatch) -> None:
    timeline = tmp_path / "timeline.jsonl"
    monkeypatch.setenv(TIMELINE_ENV, str(timeline))
    path = write_study(n_trials=1, search=SEARCH, study_keys="jobs = 1")
    assert main(["run", str(path), "--results", str(tmp_path / "results")]) == 0
    phases = _phases(timeline)
    rows = [*phases["teacher"], *phases["baseline"], *phases["stores"], *phases["trials"]]
    assert {row["pid"] for row in rows} == {os.getpid()}


KILLER = '''
import os, signal
from torch import nn
from kdsweep.plugin import hookimpl


class Dies(nn.Sequential):
    """A student whose trainer process dies at its first training step."""

    def forward(self, x):
        if self.training and os.getpid() != int(os.environ["KDSWEEP_TEST_PARENT"]):
            os.kill(os.getpid(), signal.SIGKILL)
        return super().forward(x)


def build(width, num_classes, input_shape):
    return Dies(nn.Flatten(), nn.Linear(64, num_classes))


@hookimpl
def kdsweep_register_students(registry):
    registry.add_student("dies", build)
'''


def test_a_trainer_killed_while_training_a_baseline_fails_the_run_at_once(
    write_study, tmp_path: Path, monkeypatch, capsys
) -> None:
    (tmp_path / "killer.py").write_text(KILLER)
    monkeypatch.setenv("KDSWEEP_TEST_PARENT", str(os.getpid()))
    path = write_study(n_trials=2, search=SEARCH, study_keys="jobs = 2", student={"model": "dies"})
    results = tmp_path / "results"
    code = main(["run", str(path), "--results", str(results), "--plugin", "killer.py"])
    assert code == 1
    error = capsys.readouterr().err
    assert "baseline (no KD) width" in error and "trainer process" in error
    assert "the study can be resumed" in error
    assert _runs(results, "baseline") == []  # nothing recorded for them
    assert len(_runs(results, "teacher")) == 1  # what was done stays


def test_ctrl_c_while_the_trainers_train_the_baselines_stops_at_once(
    write_study, tmp_path: Path
) -> None:
    path = write_study(n_trials=2, search=SEARCH, study_keys="jobs = 2", train={"epochs": 400})
    results = tmp_path / "results"
    command = [sys.executable, "-m", "kdsweep", "run", str(path), "--results", str(results)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list((results / "cache").glob("baselines/*.lock")):  # baselines training
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.1)
    time.sleep(1)
    listed = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text()
    children = {int(pid) for pid in listed.split()}
    assert children
    process.send_signal(signal.SIGINT)
    started = time.monotonic()
    _, errors = process.communicate(timeout=60)
    assert process.returncode == 130 and "interrupted" in errors
    assert time.monotonic() - started < 10  # the 400-epoch baselines were not waited for
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]
    assert not list((results / "cache").glob("baselines/*.pt"))


def test_sigterm_while_the_teacher_trains_ends_as_ctrl_c_does(write_study, tmp_path: Path) -> None:
    """Before the trials (where the stop signals are handled), SIGTERM is an interrupt
    too: one line, exit 130, no traceback, and no half-written teacher in the cache."""
    path = write_study(n_trials=1, search=SEARCH, study_keys="jobs = 2", teacher={"epochs": 400})
    results = tmp_path / "results"
    command = [sys.executable, "-m", "kdsweep", "run", str(path), "--results", str(results)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list((results / "cache").glob("teachers/*.lock")):  # the teacher trains
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.1)
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    _, errors = process.communicate(timeout=60)
    assert process.returncode == 130, errors[-2000:]
    assert errors.strip().splitlines()[-1] == "kdsweep: interrupted"
    assert "Traceback" not in errors
    assert not list((results / "cache").glob("teachers/*.pt"))
