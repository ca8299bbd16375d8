"""Ctrl-C while a launch of fused trials trains (in a trainer process, or in the run's
own with one job), after one of its parts has ended: that part's trials are told and
kept as they ended (runs FINISHED, students logged); only the trials still training fail
as interrupted."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from kdsweep.track import tags

# Two trials asked as one launch (fuse = 2), in two parts: their widths differ. The
# random sampler at seed 0 asks width 4 first, so its part trains and closes first; the
# part of width 2 then trains slowly (below) until Ctrl-C.
SEARCH = "width = { choices = [2, 4] }"
SLOW = """
import time
from torch import nn
from kdsweep.plugin import hookimpl


class Slow(nn.Sequential):
    \"\"\"A student that trains slowly at width 2.\"\"\"

    def __init__(self, width, num_classes):
        super().__init__(nn.Flatten(), nn.Linear(64, num_classes))
        self.slow = width <= 2

    def forward(self, x):
        if self.training and self.slow:
            time.sleep(0.05)
        return super().forward(x)


@hookimpl
def kdsweep_register_students(registry):
    registry.add_student("slow", lambda width, num_classes, shape: Slow(width, num_classes))
"""


def _trial_runs(client: MlflowClient) -> list:
    experiment = client.get_experiment_by_name("tiny")
    if experiment is None:
        return []
    return client.search_runs([experiment.experiment_id], f"tags.`{tags.ROLE}` = 'trial'")


@pytest.mark.parametrize("jobs", [2, 1], ids=["in a trainer process", "in this process"])
def test_ctrl_c_tells_and_keeps_the_part_of_a_launch_that_had_ended(
    write_study, tmp_path: Path, jobs: int
) -> None:
    (tmp_path / "slow.py").write_text(SLOW)
    path = write_study(
        n_trials=2,
        search=SEARCH,
        study_keys=f'jobs = {jobs}\nfuse = 2\nsampler = "random"',
        student={"model": "slow"},
        train={"epochs": 10},
    )
    results = tmp_path / "results"
    command = [sys.executable, "-m", "kdsweep", "run", str(path), "--results", str(results)]
    command += ["--plugin", "slow.py"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    client = MlflowClient(tracking_uri=f"sqlite:///{results / 'mlflow.db'}")
    deadline = time.monotonic() + 120
    while not [r for r in _trial_runs(client) if r.info.status == "FINISHED"]:
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise AssertionError(f"no trial run finished: {process.communicate()[1][-2000:]}")
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, errors = process.communicate(timeout=60)
    assert process.returncode == 130, errors[-2000:]

    storage = f"sqlite:///{results / 'optuna.db'}"
    trials = optuna.load_study(study_name="tiny", storage=storage).trials
    assert [t.params["student.width"] for t in trials] == [4, 2]  # the quick one first
    short, long = trials
    assert short.state == TrialState.COMPLETE and short.values
    assert long.state == TrialState.FAIL and long.user_attrs["fail_reason"] == "interrupted"
    runs = {int(r.data.tags[tags.TRIAL_NUMBER]): r for r in _trial_runs(client)}
    assert runs[short.number].info.status == "FINISHED"  # not reconciled away
    assert runs[long.number].info.status == "KILLED"
    kept = runs[short.number].data.tags[tags.MODEL_ID]
    assert client.get_logged_model(kept).source_run_id == runs[short.number].info.run_id
