"""Where a command's time goes: with ``KDSWEEP_TIMELINE=FILE`` set, every process of a
run (the command and its trainer processes) appends one JSON line per phase it ends:
``{"phase": ..., "start": ..., "end": ..., "pid": ..., "cpu": ...}``, times in Unix
seconds, so overlapping phases show as such; ``cpu`` is the CPU time the process used
meanwhile (all its threads), in seconds.
``bench/whole_job.py`` reads it. Unset, a phase costs one environment lookup.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

TIMELINE_ENV = "KDSWEEP_TIMELINE"


def _append(phase: str, start: float, cpu: float) -> None:
    """Append ``phase`` (from ``start`` to now; ``cpu`` seconds of the process's CPU time
    meanwhile) to the timeline file."""
    path = os.environ.get(TIMELINE_ENV)
    if not path:
        return
    line = {"phase": phase, "start": start, "end": time.time(), "cpu": cpu}
    with open(path, "a", encoding="utf-8") as handle:  # one short append per line
        handle.write(json.dumps({**line, "pid": os.getpid()}) + "\n")


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Record the block as phase ``name`` (also when it raises)."""
    start, cpu = time.time(), time.process_time()
    try:
        yield
    finally:
        _append(name, start, time.process_time() - cpu)
