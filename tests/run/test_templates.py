"""New SQLite stores copied from per-version templates of empty stores (MLflow's
migrations take seconds); a broken template is made again, never used."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from kdsweep.run.stores import create_sqlite_atomically
from kdsweep.run.templates import CACHE_ENV, template_path
from kdsweep.track.tracker import create_mlflow_schema


@pytest.fixture
def cache(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def _made(calls: list[str]):
    def create(url: str) -> None:
        calls.append(url)
        create_mlflow_schema(url)

    return create


def test_a_second_store_is_a_copy_of_the_template(tmp_path: Path, cache: Path) -> None:
    calls: list[str] = []
    first, second = tmp_path / "a" / "mlflow.db", tmp_path / "b" / "mlflow.db"
    for path in (first, second):
        path.parent.mkdir()
        create_sqlite_atomically(f"sqlite:///{path}", _made(calls), "mlflow")
    assert len(calls) == 1  # the second one was copied
    assert template_path("mlflow").is_file() and template_path("mlflow").parent.parent == cache
    client = MlflowClient(tracking_uri=f"sqlite:///{second}")
    experiment = client.create_experiment("copied")
    run = client.create_run(experiment)
    client.log_metric(run.info.run_id, "val_accuracy", 0.5)
    assert client.get_run(run.info.run_id).data.metrics == {"val_accuracy": 0.5}
    assert list(second.parent.iterdir()) == [second]  # no temporary file left


@pytest.mark.parametrize("content", [b"", b"not a database at all" * 100])
def test_a_broken_template_is_made_again(tmp_path: Path, cache: Path, content: bytes) -> None:
    template = template_path("mlflow")
    template.parent.mkdir(parents=True)
    template.write_bytes(content)
    calls: list[str] = []
    store = tmp_path / "mlflow.db"
    create_sqlite_atomically(f"sqlite:///{store}", _made(calls), "mlflow")
    assert len(calls) == 1
    assert MlflowClient(tracking_uri=f"sqlite:///{store}").search_experiments()
    assert template.stat().st_size > len(content)  # replaced by a good one
