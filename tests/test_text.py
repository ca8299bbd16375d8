from __future__ import annotations

from kdsweep.cli import main
from kdsweep.text import redact_url


def test_passwords_are_hidden() -> None:
    assert redact_url("postgresql://kd:s3cret@db:5432/x") == "postgresql://kd:***@db:5432/x"
    assert redact_url("postgresql+psycopg://kd:p%40ss@db/x") == "postgresql+psycopg://kd:***@db/x"
    assert redact_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    assert redact_url("http://mlflow:5000") == "http://mlflow:5000"


def test_a_password_in_the_storage_url_is_never_printed(write_study, tmp_path, capsys) -> None:
    path = write_study(n_trials=1)
    storage = "postgresql://postgres:TopSecret@127.0.0.1:1/test"  # nothing listens there
    code = main(["run", str(path), "--storage", storage, "--results", str(tmp_path / "r")])
    captured = capsys.readouterr()
    assert code == 2
    assert "TopSecret" not in captured.out + captured.err
    assert "postgresql://postgres:***@127.0.0.1:1/test" in captured.err
