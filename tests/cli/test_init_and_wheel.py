"""Starting from the installed package: ``kdsweep init`` writes a starter study, the
study files ship inside the wheel, and ``--help`` lists every command."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

from kdsweep.cli import main
from kdsweep.cli.starters import starters

ROOT = Path(__file__).resolve().parents[2]
PIP = (sys.executable, "-m", "pip")


def test_init_writes_a_named_starter_and_refuses_to_overwrite(
    tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["init", "mystudy", "--from", "response"]) == 0
    text = (tmp_path / "mystudy.toml").read_text()
    assert tomllib.loads(text)["study"]["name"] == "mystudy"
    assert text.startswith("# Started from kdsweep's response.toml")
    assert "kdsweep run mystudy.toml" in capsys.readouterr().out
    assert main(["init", "mystudy"]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["init", "mystudy", "--force"]) == 0
    assert tomllib.loads((tmp_path / "mystudy.toml").read_text())["study"]["name"] == "mystudy"
    assert main(["init", "other", "--from", "digit"]) == 2
    assert "--from 'digit': no such study (studies: " in capsys.readouterr().err
    assert main(["init", "bad name"]) == 2


def test_help_lists_every_command_with_an_example(capsys) -> None:
    try:
        main(["--help"])
    except SystemExit as exc:
        assert exc.code == 0
    shown = capsys.readouterr().out
    for command in ("init", "run", "worker", "plugins", "report", "export", "ui", "dashboard"):
        assert f"  {command} " in shown and f"kdsweep {command} " in shown, command


def test_the_wheel_installs_and_runs_a_starter_from_an_empty_folder(tmp_path) -> None:
    """The wheel built from this checkout, in a fresh virtual environment (its heavy
    dependencies borrowed from this one), then ``kdsweep init`` and ``kdsweep run``."""
    wheels = tmp_path / "wheels"
    subprocess.run(
        [*PIP, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("kdsweep-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {f"kdsweep/studies/{name}.toml" for name in starters()} <= set(names)
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # This environment's packages (torch, optuna, mlflow...) but not its kdsweep: a plain
    # path line adds the folder without running its .pth files (the editable install).
    (Path(site) / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    kdsweep = str(venv / "bin" / "kdsweep")
    where = subprocess.run(
        [str(python), "-c", "import kdsweep; print(kdsweep.__file__)"],
        cwd=empty,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(str(venv)), where  # the wheel's kdsweep, not the checkout's
    assert subprocess.run([kdsweep, "init", "mystudy"], cwd=empty).returncode == 0
    done = subprocess.run(
        [kdsweep, "run", "mystudy.toml", "--n-trials", "2"],
        cwd=empty,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (empty / "results" / "optuna.db").is_file()
    assert "kdsweep ui mystudy.toml" in done.stdout
