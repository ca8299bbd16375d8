"""SIGINT and SIGTERM while a study runs: the first stops cleanly, the second at once."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

EXIT_INTERRUPTED = 130


class StopSignals:
    """The first SIGINT or SIGTERM raises ``KeyboardInterrupt`` (the running trial is marked
    failed and its MLflow run KILLED) or, with ``graceful``, lets the running trial finish
    and starts no other; a second one exits the process at once."""

    def __init__(self, graceful: bool = False) -> None:
        self.graceful = graceful
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            os._exit(EXIT_INTERRUPTED)
        self.requested = True
        if not self.graceful:
            raise KeyboardInterrupt(signal.Signals(signum).name)

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM raises ``KeyboardInterrupt``, as Ctrl-C does, for the whole command (not
    only while the trials run, where :class:`StopSignals` takes over): a run stopped by a
    service manager or ``timeout`` while its teacher trains also ends cleanly, exit 130."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
