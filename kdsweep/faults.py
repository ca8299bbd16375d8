"""Fault injection for the crash tests: ``KDSWEEP_FAULT=point[:n]`` makes the process kill
itself with SIGKILL the ``n``-th time (default: first) it reaches ``point``.

The points mark the moments a crash can leave the stores half-written: ``teacher_epoch``,
``baseline_epoch``, ``after_ask`` (before the trial's first heartbeat), ``trial_epoch``,
``before_run_end`` (MLflow), ``before_tell`` (Optuna). Unset, a point costs one dict
lookup.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

FAULT_ENV = "KDSWEEP_FAULT"
_reached: Counter[str] = Counter()


def fault_point(point: str) -> None:
    """SIGKILL this process if ``KDSWEEP_FAULT`` names ``point`` and its count is reached."""
    wanted = os.environ.get(FAULT_ENV)
    if not wanted:
        return
    name, _, count = wanted.partition(":")
    if name != point:
        return
    _reached[point] += 1
    if _reached[point] >= int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
