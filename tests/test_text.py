from __future__ import annotations

from kdsweep.cli import main
from kdsweep.text import redact_url


def test_passwords_are_hidden() -> None:
    assert redact_url("postgresql://kd:s3cret@db:5432/x") == "postgresql://kd:***@db:5432/x"
    assert redact_url("postgresql+psycopg://kd:p%40ss@db/x") == "postgresql+psycopg://kd:***@db/x"
    assert redact_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    assert redact_url("http://mlflow:5000") == "http://mlflow:5000"


def test_every_url_form_of_a_password_is_hidden() -> None:
    assert redact_url("postgresql://:PW@db/x") == "postgresql://:***@db/x"  # no user
    assert redact_url("postgresql://kd@db/x?password=PW&sslmode=require") == (
        "postgresql://kd@db/x?password=***&sslmode=require"
    )
    assert redact_url("postgresql://db/x?sslmode=require&Password=P%40W") == (
        "postgresql://db/x?sslmode=require&Password=***"
    )
    assert "PW" not in redact_url("mysql+pymysql://root:PW@h:3306/db?charset=utf8")


def test_a_password_in_the_storage_url_is_never_printed(write_study, tmp_path, capsys) -> None:
    path = write_study(n_trials=1)
    storage = "postgresql://postgres:TopSecret@127.0.0.1:1/test"  # nothing listens there
    code = main(["run", str(path), "--storage", storage, "--results", str(tmp_path / "r")])
    captured = capsys.readouterr()
    assert code == 1  # the server, not the input, failed: the study stays resumable
    assert "TopSecret" not in captured.out + captured.err
    assert "cannot reach postgresql://postgres:***@127.0.0.1:1/test" in captured.err
