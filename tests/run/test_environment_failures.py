"""A full disk, a read-only results folder and an unreachable server: one line naming
the place and the cause, a non-zero exit within 30 s, and a study that can be resumed."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest


def _mount_tmpfs(folder: Path, options: str) -> None:
    folder.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()[:200]}")


def _tmpfs(tmp_path: Path, name: str, options: str):
    folder = tmp_path / name
    _mount_tmpfs(folder, options)
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture
def small_disk(tmp_path):
    yield from _tmpfs(tmp_path, "disk", "size=600k")


@pytest.fixture
def read_only(tmp_path):
    yield from _tmpfs(tmp_path, "ro", "ro,size=1m")


def _run(study: Path, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "kdsweep", "run", str(study), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done, time.monotonic() - started


def _one_error_line(done: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("kdsweep: error:")]
    assert len(errors) == 1, done.stderr[-3000:]
    return errors[0]


def test_a_full_disk_is_one_line_and_the_study_resumes(write_study, small_disk) -> None:
    study = write_study(n_trials=4)
    done, seconds = _run(study, "--results", str(small_disk / "r"))
    assert done.returncode == 1 and seconds < 30
    line = _one_error_line(done)
    assert str(small_disk / "r") in line
    assert "database or disk is full" in line or "No space left on device" in line
    subprocess.run(["mount", "-o", "remount,size=200m", str(small_disk)], check=True)
    again, _ = _run(study, "--results", str(small_disk / "r"))
    assert again.returncode == 0, again.stderr[-3000:]
    stored = optuna.load_study(
        study_name="tiny", storage=f"sqlite:///{small_disk / 'r' / 'optuna.db'}"
    )
    assert sum(t.state.name == "COMPLETE" for t in stored.trials) == 4


def test_a_read_only_results_folder_is_one_line(write_study, read_only) -> None:
    done, seconds = _run(write_study(), "--results", str(read_only / "r"))
    assert done.returncode == 1 and seconds < 30
    line = _one_error_line(done)
    assert str(read_only / "r") in line and "Read-only file system" in line


def test_an_unreachable_tracking_server_is_one_line_within_seconds(write_study, tmp_path) -> None:
    tracking = "postgresql://kd:Secret@127.0.0.1:1/mlflow"  # nothing listens on port 1
    done, seconds = _run(
        write_study(), "--results", str(tmp_path / "r"), "--tracking-uri", tracking
    )
    assert done.returncode == 1 and seconds < 30
    line = _one_error_line(done)
    assert "cannot reach postgresql://kd:***@127.0.0.1:1/mlflow" in line
    assert "Secret" not in done.stderr + done.stdout
