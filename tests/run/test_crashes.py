"""Crash-proofing with real processes: SIGKILL at every moment that leaves the stores
half-written (fault points), then the same command again. The rerun must finish exactly
``n_trials``, leave no trial RUNNING and no process behind, and leave Optuna and MLflow
agreeing on every trial."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from recorded import student_models, trial_runs

from kdsweep.run.reconcile import AGREEING

FAST_HEARTBEAT = {"KDSWEEP_HEARTBEAT_S": "1", "KDSWEEP_GRACE_S": "3"}
N_TRIALS = 3
MARK = "KDSWEEP_TEST_MARK"


def _study(write_study, name: str = "crash") -> Path:
    return write_study(
        name=name,
        n_trials=N_TRIALS,
        search="temperature = { low = 1.0, high = 8.0 }",
        study={"baseline": True},
        teacher={"epochs": 3},
        train={"epochs": 3, "batch_size": 256},
    )


def _run(
    study: Path,
    results: Path,
    *extra: str,
    fault: str = "",
    mark: str = "",
    env: dict[str, str] | None = None,
):
    env = {**os.environ, **FAST_HEARTBEAT, **(env or {}), MARK: mark or uuid.uuid4().hex}
    if fault:
        env["KDSWEEP_FAULT"] = fault
    return subprocess.run(
        [sys.executable, "-m", "kdsweep", "run", str(study), "--results", str(results), *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _marked(mark: str) -> list[int]:
    """Processes whose environment carries ``mark``: the run and anything it started."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if f"{MARK}={mark}".encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _assert_consistent(results: Path, name: str = "crash") -> None:
    """Exactly n_trials finished, none running, and MLflow agrees with Optuna."""
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{results / 'optuna.db'}")
    states = [t.state for t in study.trials]
    assert sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states) == N_TRIALS
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    by_number = {t.number: t for t in study.trials}
    runs = trial_runs(f"sqlite:///{results / 'mlflow.db'}", name)
    for run in runs:
        trial = by_number[int(run.data.tags["kdsweep.trial_number"])]
        assert run.info.status in AGREEING[trial.state], (trial.number, trial.state, run.info)
        assert run.data.tags["kdsweep.trial_state"] == trial.state.name
    finished = [r for r in runs if r.info.status == "FINISHED"]
    assert len(finished) == sum(s == TrialState.COMPLETE for s in states)
    # No student survives of a run the crash cut short: each kept one is its trial's.
    students = student_models(f"sqlite:///{results / 'mlflow.db'}", name)
    assert students, "the best trial's student is kept"
    for student in students:
        trial = by_number[int(student.tags["kdsweep.trial_number"])]
        assert trial.state == TrialState.COMPLETE
        assert trial.user_attrs["model_id"] == student.model_id
        assert student.source_run_id == trial.user_attrs["mlflow_run_id"]


@pytest.mark.parametrize(
    "fault",
    [
        "teacher_epoch:2",
        "baseline_epoch",
        "after_ask:2",
        "trial_epoch:2",
        "before_run_end:2",
        "before_tell:2",
    ],
)
def test_sigkill_at_each_moment_then_the_rerun_finishes(write_study, tmp_path, fault) -> None:
    study, results = _study(write_study), tmp_path / "r"
    killed = _run(study, results, fault=fault)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    started = time.monotonic()
    again = _run(study, results)
    assert again.returncode == 0, again.stderr[-3000:]
    assert time.monotonic() - started < 90  # the grace period (3 s) plus the trials' time
    assert "Traceback" not in again.stderr
    _assert_consistent(results)


def test_a_rerun_after_a_kill_does_not_wait_out_the_grace_period(write_study, tmp_path) -> None:
    """The killed run's trials are stamped with its process: the rerun on this machine
    sees it gone, fails and retries them at once (grace period here: 10 minutes)."""
    study, results = _study(write_study), tmp_path / "r"
    slow_grace = {"KDSWEEP_GRACE_S": "600", "KDSWEEP_HEARTBEAT_S": "5"}
    killed = _run(study, results, fault="trial_epoch:2", env=slow_grace)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    started = time.monotonic()
    again = _run(study, results, env=slow_grace)
    assert again.returncode == 0, again.stderr[-3000:]
    assert time.monotonic() - started < 120  # not the 600 s of grace
    _assert_consistent(results)
    trials = optuna.load_study(study_name="crash", storage=f"sqlite:///{results / 'optuna.db'}")
    failed = [t for t in trials.trials if t.state == TrialState.FAIL]
    assert len(failed) == 1  # the one the kill cut short, retried with its params
    retries = [t for t in trials.trials if t.params == failed[0].params]
    assert [t.state for t in retries] == [TrialState.FAIL, TrialState.COMPLETE]


def test_a_student_logged_before_the_kill_is_removed_by_the_rerun(write_study, tmp_path) -> None:
    """Killed after the second trial's student was logged, before its run ended: the
    rerun retries the trial and deletes the student of the cut-short run, weights too."""
    study = write_study(
        name="crash",
        n_trials=N_TRIALS,
        search="temperature = { low = 1.0, high = 8.0 }",
        study_keys='keep = "all"',
        teacher={"epochs": 2},
        train={"epochs": 2, "batch_size": 256},
    )
    results = tmp_path / "r"
    tracking = f"sqlite:///{results / 'mlflow.db'}"
    killed = _run(study, results, fault="before_run_end:2")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    orphan = next(
        m for m in student_models(tracking, "crash") if m.tags["kdsweep.trial_number"] == "1"
    )
    assert _run(study, results).returncode == 0
    _assert_consistent(results)
    assert orphan.model_id not in {m.model_id for m in student_models(tracking, "crash")}
    assert len(student_models(tracking, "crash")) == N_TRIALS
    assert not (results / "artifacts" / "crash" / "models" / orphan.model_id / "artifacts").exists()


def test_trainer_processes_end_with_a_killed_parent(write_study, tmp_path) -> None:
    study, results, mark = _study(write_study), tmp_path / "r", uuid.uuid4().hex
    killed = _run(study, results, "--jobs", "2", fault="trial_epoch:2", mark=mark)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    deadline = time.monotonic() + 10
    while _marked(mark) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _marked(mark) == [], "trainer processes outlived their parent"
    again = _run(study, results, "--jobs", "2")
    assert again.returncode == 0, again.stderr[-3000:]
    _assert_consistent(results)


def test_two_runs_on_one_folder_sample_differently_and_train_the_teacher_once(
    write_study, tmp_path
) -> None:
    study, results = _study(write_study, name="twice"), tmp_path / "r"
    env = {**os.environ, **FAST_HEARTBEAT}
    command = [sys.executable, "-m", "kdsweep", "run", str(study), "--results", str(results)]
    runs = [
        subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=300)[1] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    trained = [
        ("teacher: val" in out and "(cached)" not in out.split("teacher: val")[1].splitlines()[0])
        for out in outputs
    ]
    assert trained.count(True) == 1, outputs  # the other waited for it, then loaded it
    trials = optuna.load_study(
        study_name="twice", storage=f"sqlite:///{results / 'optuna.db'}"
    ).trials
    temperatures = [t.params["loss.temperature"] for t in trials if t.params]
    assert len(set(temperatures)) == len(temperatures), temperatures
