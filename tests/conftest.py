"""Shared fixtures: the real registry, tiny study files on the digits dataset, and the
PostgreSQL server of the distributed tests."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from study_files import write_tiny_study

from kdsweep.plugin.manager import load_registry
from kdsweep.plugin.registry import Registry

POSTGRES = "host=127.0.0.1 port=5432 user=postgres dbname=test"


@pytest.fixture(scope="session")
def registry() -> Registry:
    """Every installed plugin, as the CLI loads them."""
    return load_registry()


@pytest.fixture
def write_study(tmp_path: Path) -> Callable[..., Path]:
    """Write a tiny digits study (seconds to run) into the test's folder and return its
    path: :func:`study_files.write_tiny_study`."""

    def write(body: str | None = None, *, filename: str = "study.toml", **fields) -> Path:
        return write_tiny_study(tmp_path / filename, body, **fields)

    return write


@pytest.fixture(scope="session")
def postgres() -> str:
    """The libpq address of the PostgreSQL server on 127.0.0.1. Without one the test is
    skipped, except under CI (``CI=true``), where a missing server is a failure."""
    import psycopg

    try:
        psycopg.connect(POSTGRES, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        reason = f"no PostgreSQL server on 127.0.0.1:5432 ({str(exc).strip()[:200]})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}: CI must start it (.ci/run does)")
        pytest.skip(f"{reason}: start one to run the distributed tests")
    return POSTGRES
