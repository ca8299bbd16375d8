"""The command line as a user meets it: listings, and one-line errors before training."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from kdsweep.cli import main


def test_plugins_fits_80_columns_in_plain_text(capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "``" not in out and ":class:" not in out and ":func:" not in out
    for name in ("digits", "cnn", "kd", "dkd", "linear_warmup"):
        assert f" {name} " in out
    assert "builtin-losses (kdsweep 0.1.0)" in out


def test_plugins_wide_lists_builtins_with_origin_and_params(capsys) -> None:
    assert main(["plugins", "--wide"]) == 0
    out = capsys.readouterr().out
    (kd_line,) = [line for line in out.splitlines() if " kd " in line]
    assert "loss" in kd_line and "builtin-losses (kdsweep 0.1.0)" in kd_line
    assert "temperature=4.0" in kd_line and "alpha=0.9" in kd_line
    for name in ("digits", "cnn", "mlp", "ce", "constant", "linear", "exponential"):
        assert f" {name} " in out
    lines = out.splitlines()
    for name in ("dkd", "dist", "fitnet", "at", "rkd", "sp", "multi_teacher", "dml"):
        (line,) = [line for line in lines if f" {name} " in line and "│ loss" in line]
        assert "=" in line  # its hyperparameters with their defaults


def _run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    beside_python = Path(sys.executable).parent / "kdsweep"
    executable = str(beside_python) if beside_python.exists() else shutil.which("kdsweep")
    assert executable, "the kdsweep console script is installed"
    return subprocess.run([executable, *args], cwd=cwd, capture_output=True, text=True, check=False)


def _assert_one_line_error(done: subprocess.CompletedProcess, *culprits: str) -> None:
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("kdsweep: error: ")
    for culprit in culprits:
        assert culprit in lines[0]


def test_broken_plugin_module(write_study, tmp_path) -> None:
    (tmp_path / "broken_plugin.py").write_text("raise ImportError('needs libfoo')\n")
    path = write_study(extra="")
    done = _run_cli("run", str(path), "--plugin", "broken_plugin.py", cwd=tmp_path)
    _assert_one_line_error(done, "plugin 'broken_plugin'", "needs libfoo")
    assert not (tmp_path / "results").exists()  # nothing started


def test_duplicate_component_name(write_study, tmp_path) -> None:
    (tmp_path / "dupe.py").write_text(
        "from kdsweep.plugin import hookimpl\n\n@hookimpl\n"
        "def kdsweep_register_losses(registry):\n"
        "    registry.add_loss('kd', lambda batch: 0)\n"
    )
    done = _run_cli("plugins", "--plugin", "dupe.py", cwd=tmp_path)
    _assert_one_line_error(done, "loss 'kd'", "plugin 'builtin-losses'", "plugin 'dupe'")


def test_unknown_component_in_study(write_study, tmp_path) -> None:
    path = write_study(loss="hinton")
    done = _run_cli("run", str(path), cwd=tmp_path)
    _assert_one_line_error(done, str(path), "[loss] name = 'hinton'", "unknown loss 'hinton'")
    assert not (tmp_path / "results").exists()


def test_bad_width_fails_before_training(write_study, tmp_path, capsys) -> None:
    path = write_study(search="width = { choices = [2, 2.5] }")
    assert main(["run", str(path), "--results", str(tmp_path / "r")]) == 2
    error = capsys.readouterr().err
    assert "[student] width / [search] width = 2.5" in error and "positive whole number" in error
    assert not (tmp_path / "r" / "cache").exists()  # no model was trained


def test_command_line_counts_are_checked_before_anything_starts(write_study, tmp_path) -> None:
    path = write_study()
    for flags, culprit in (
        (["--n-trials", "-1"], "--n-trials -1: must be >= 0"),
        (["--timeout", "-5"], "--timeout -5.0: must be > 0"),
        (["--workers", "0"], "--workers 0: must be >= 1"),
        (["--jobs", "0"], "--jobs 0"),
    ):
        done = _run_cli("run", str(path), *flags, "--results", "r", cwd=tmp_path)
        _assert_one_line_error(done, culprit)
        assert not (tmp_path / "r").exists()


def test_report_and_results_on_a_missing_results_folder(write_study, tmp_path) -> None:
    path = write_study()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = _run_cli("report", str(path), "--results", str(tmp_path / "absent"), cwd=elsewhere)
    _assert_one_line_error(done, "has no results in", "absent")
    loaded = subprocess.run(
        [sys.executable, "-c", f"import kdsweep; kdsweep.load_results({str(path)!r})"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        check=False,
    )
    assert loaded.returncode == 1 and "has no results" in loaded.stderr
    assert list(elsewhere.iterdir()) == [] and not (tmp_path / "absent").exists()  # nothing made
