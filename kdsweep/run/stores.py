"""Opening the two stores of a study: the Optuna storage and the MLflow tracking store.
Workers starting together race to create the tables: the loser tries again."""

from __future__ import annotations

import contextlib
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from kdsweep.errors import KdsweepError, RunFailure, environment_cause
from kdsweep.run.locations import StudyLocations
from kdsweep.run.plan import Plan
from kdsweep.run.templates import copy_template, save_template, template_path
from kdsweep.search.study import create_optuna_schema, open_study
from kdsweep.text import redact_url
from kdsweep.timeline import phase
from kdsweep.track.tracker import Tracker, create_mlflow_schema

T = TypeVar("T")


REACH_TIMEOUT_S = 5.0
DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}


@contextmanager
def stores_failing_as(locations: StudyLocations) -> Iterator[None]:
    """Turn a full disk, a read-only or missing folder or an unreachable server, wherever
    it shows, into one :class:`RunFailure` line naming the stores and the cause."""
    try:
        yield
    except KdsweepError:
        raise
    except Exception as exc:
        cause = environment_cause(exc)
        if cause is None:
            raise
        raise RunFailure(
            f"results {locations.results} (optuna {redact_url(locations.storage)}, mlflow "
            f"{redact_url(locations.tracking_uri)}): {cause}; the study can be resumed"
        ) from exc


def check_reachable(url: str) -> None:
    """For a database server URL, an error within seconds when its host does not answer
    (the stores' own clients retry for minutes)."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+")[0]
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return
    port = parts.port or DEFAULT_PORTS[scheme]
    try:
        socket.create_connection((parts.hostname, port), timeout=REACH_TIMEOUT_S).close()
    except OSError as exc:
        raise RunFailure(
            f"cannot reach {redact_url(url)} ({parts.hostname}:{port}): {exc.strerror or exc}"
        ) from None


class OpeningStores:
    """The study's two stores, opened in a thread of their own while the baselines train in
    the trainer processes (importing MLflow and opening its store take seconds). Not while
    the teacher trains in this process: the thread's Python work holds the interpreter lock
    that each of the teacher's steps needs (measured: the teacher took 6.8 s instead of
    3.7 s, docs/performance.md)."""

    def __init__(self, plan: Plan) -> None:
        self._opened: tuple[Any, Tracker] | None = None
        self._error: BaseException | None = None
        # Waited for through an event, not Thread.join: a Ctrl-C that cuts into a join
        # makes CPython 3.11 take the live thread for ended (see search/loop.py).
        self._done = threading.Event()
        threading.Thread(
            target=self._open, args=(plan,), name="kdsweep-stores", daemon=True
        ).start()

    def get(self) -> tuple[Any, Tracker]:
        """The Optuna study and the MLflow tracker, once open; what failed, raised here."""
        self._done.wait()
        if self._error is not None:
            raise self._error
        assert self._opened is not None
        return self._opened

    def _open(self, plan: Plan) -> None:
        try:
            with phase("stores"):
                self._opened = open_stores(plan)
        except BaseException as exc:  # raised again by get(), in the caller's thread
            self._error = exc
        finally:
            self._done.set()


def check_locations(locations: StudyLocations) -> None:
    """The stores' servers answer and the results folder exists (made if need be)."""
    for url in (locations.storage, locations.tracking_uri):
        check_reachable(url)
    locations.results.mkdir(parents=True, exist_ok=True)


def open_stores(plan: Plan) -> tuple[Any, Tracker]:
    """The study's Optuna study (created or resumed) and its MLflow tracker."""
    locations, settings = plan.locations, plan.study.settings
    check_locations(locations)
    create_sqlite_atomically(locations.storage, create_optuna_schema, "optuna")
    create_sqlite_atomically(locations.tracking_uri, create_mlflow_schema, "mlflow")
    optuna_study = retrying(
        lambda: open_study(settings, locations.storage, plan.sampler),
        f"Optuna storage {redact_url(locations.storage)}",
    )
    tracker = retrying(
        lambda: Tracker(locations.tracking_uri, settings.name, locations.results / "artifacts"),
        f"MLflow tracking store {redact_url(locations.tracking_uri)}",
    )
    return optuna_study, tracker


def create_sqlite_atomically(
    url: str, create_schema: Callable[[str], None], package: str | None = None
) -> None:
    """A new SQLite store made whole or not at all: its tables are created in a file of
    its own (copied from ``package``'s template when there is one, see
    :mod:`kdsweep.run.templates`), which then takes the store's name (unless another
    process's did first). A store half-created on a full disk could not be opened again."""
    if not url.startswith("sqlite:///"):
        return
    path = Path(url.removeprefix("sqlite:///"))
    if path.exists():
        return
    fresh = path.with_name(f".{path.name}.{os.getpid()}.new")
    template = template_path(package) if package else None
    try:
        if template is None or not copy_template(template, fresh):
            create_schema(f"sqlite:///{fresh}")
            if template is not None:
                save_template(fresh, template)
        with contextlib.suppress(FileExistsError):  # another process created it first
            os.link(fresh, path)
    finally:
        fresh.unlink(missing_ok=True)


def retrying(create: Callable[[], T], what: str, attempts: int = 4) -> T:
    """``create()``, tried again after a short random pause when it fails; then an error
    naming ``what`` (with any password hidden). A full disk, a read-only folder or an
    unreachable server is not tried again."""
    for attempt in range(attempts):
        try:
            return create()
        except KdsweepError:
            raise
        except Exception as exc:
            if environment_cause(exc) is not None:
                raise
            if attempt == attempts - 1:
                cause = redact_url(str(exc).strip().splitlines()[0] if str(exc).strip() else "")
                raise KdsweepError(
                    f"cannot open the {what}: {type(exc).__name__}: {cause}"
                ) from None
            time.sleep(0.5 + random.random() * (attempt + 1))
    raise AssertionError("unreachable")
