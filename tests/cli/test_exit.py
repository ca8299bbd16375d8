"""The ``kdsweep`` command ends with its work's exit status, its output flushed and its
exit handlers run, without the interpreter's slow teardown."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from kdsweep.project import __version__

ATEXIT_PLUGIN = """
import atexit, pathlib
from kdsweep.plugin import hookimpl

atexit.register(lambda: pathlib.Path("exited").write_text("handlers ran"))


@hookimpl
def kdsweep_register_schedules(registry):
    registry.add_schedule("held", lambda base, epoch, epochs: base)
"""


def _kdsweep(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "kdsweep", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_exit_statuses_and_messages(tmp_path: Path) -> None:
    assert _kdsweep("--version", cwd=tmp_path).stdout.strip() == f"kdsweep {__version__}"
    missing = _kdsweep("run", "missing.toml", cwd=tmp_path)
    assert missing.returncode == 2 and "missing.toml" in missing.stderr
    usage = _kdsweep("frobnicate", cwd=tmp_path)
    assert usage.returncode == 2 and "invalid choice" in usage.stderr


def test_output_is_complete_and_exit_handlers_run(write_study, tmp_path: Path) -> None:
    (tmp_path / "atexit_plugin.py").write_text(ATEXIT_PLUGIN)
    listed = _kdsweep("plugins", "--wide", "--plugin", "atexit_plugin.py", cwd=tmp_path)
    assert listed.returncode == 0
    assert "held" in listed.stdout
    assert listed.stdout.rstrip().splitlines()[-1].startswith("└")  # the whole table
    assert (tmp_path / "exited").read_text() == "handlers ran"

    path = write_study(n_trials=1)
    ran = _kdsweep("run", str(path), "--results", "results", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines()[-1].startswith("export the best student with: kdsweep export")
