"""MLflow's process-wide state (tracking URI, loggers' levels) that logging a student
sets for a moment: one thread at a time, so two trial loops closing parts at once neither
leak MLflow's notes nor leave its loggers silenced."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import kdsweep.track.models as models
from kdsweep.track.models import _QUIETED


def test_a_second_thread_waits_and_the_levels_come_back(tmp_path: Path) -> None:
    loggers = [logging.getLogger(name) for name in _QUIETED]
    before = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.INFO)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first_in, first_go, second_in, second_go = (threading.Event() for _ in range(4))
    seen_inside: list[int] = []

    def first() -> None:
        with models._fluent_mlflow(uri):
            first_in.set()
            first_go.wait(10)

    def second() -> None:
        with models._fluent_mlflow(uri):
            second_in.set()
            second_go.wait(10)
            seen_inside.extend(logger.level for logger in loggers)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    try:
        threads[0].start()
        assert first_in.wait(10)
        threads[1].start()
        assert not second_in.wait(0.3)  # waits for the first to be done
        first_go.set()
        assert second_in.wait(10)
        second_go.set()
        for thread in threads:
            thread.join(10)
        # Quiet all the while the second logged, though the first had put its levels back
        assert seen_inside == [logging.ERROR] * len(loggers)
        assert [logger.level for logger in loggers] == [logging.INFO] * len(loggers)
    finally:
        first_go.set()
        second_go.set()
        for logger, level in zip(loggers, before, strict=True):
            logger.setLevel(level)
