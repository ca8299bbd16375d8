"""The third-party path: install the example plugin package, then use it like a user."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from recorded import trial_runs

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "kdsweep-example-plugin"


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory) -> dict[str, str]:
    """An environment in which the example plugin is pip-installed (into a private target)."""
    target = tmp_path_factory.mktemp("site-packages")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(EXAMPLE),
        ],
        check=True,
    )
    return {**os.environ, "PYTHONPATH": str(target)}


def _kdsweep(env: dict[str, str], *args: str, cwd: Path | None = None):
    return subprocess.run(
        [sys.executable, "-m", "kdsweep", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )


def test_installed_plugin_is_listed(plugin_env) -> None:
    listing = _kdsweep(plugin_env, "plugins", "--wide")
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    for name in ("dwsep", "logit_mse"):
        (line,) = [line for line in lines if f" {name} " in line]
        assert "example (kdsweep-example-plugin 0.2.0)" in line


def test_study_uses_the_plugin_student_and_loss(plugin_env, tmp_path) -> None:
    done = _kdsweep(plugin_env, "run", str(EXAMPLE / "study.toml"), "--results", str(tmp_path))
    assert done.returncode == 0, done.stderr
    trials = trial_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "example-plugin")
    assert len(trials) == 3
    for run in trials:
        assert run.info.status == "FINISHED"
        tags = run.data.tags
        assert (tags["kdsweep.student"], tags["kdsweep.student.plugin"]) == ("dwsep", "example")
        assert (tags["kdsweep.loss"], tags["kdsweep.loss.version"]) == ("logit_mse", "0.2.0")
        assert 0 < run.data.metrics["val_accuracy"] <= 1


def test_the_plugins_own_tests_pass(plugin_env) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        env=plugin_env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:]


def test_disabling_the_plugin_hides_it(plugin_env) -> None:
    listing = _kdsweep({**plugin_env, "KDSWEEP_DISABLE_PLUGINS": "example"}, "plugins")
    assert listing.returncode == 0
    assert "dwsep" not in listing.stdout
