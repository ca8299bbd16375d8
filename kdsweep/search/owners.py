"""Which process runs a trial, and whether that process is gone.

Each trial is stamped at ask time with its owner: the machine's boot id, the PID
namespace, the PID and the process's start time. A run on the same machine (and
namespace) that finds a running trial whose owner no longer exists fails it at once,
instead of waiting out the heartbeat grace period: a rerun after ``kill -9`` starts at
once. An owner elsewhere (another machine, another container) cannot be checked from here
and is left to the heartbeat, as is a trial stamped by no one (Linux-only ``/proc``).
"""

from __future__ import annotations

import os
import socket
from functools import cache
from pathlib import Path

OWNER_ATTR = "owner"  # the trial's user attribute: "<boot id>/<pid ns>/<pid>/<start>#<trial>"
WORKER_ATTR = "worker"  # the same owner as people read it: "<host>:<pid>" (kdsweep report)
_PROC = Path("/proc")


def worker() -> str:
    """This process as ``kdsweep report`` shows a trial's worker: host and PID."""
    return f"{socket.gethostname()}:{os.getpid()}"


def stamp(number: int) -> str:
    """The owner stamp of trial ``number`` asked by this process; "" where it cannot be
    made (no ``/proc``). It names the trial too: Optuna copies a trial's attributes to its
    retry, whose stamp must not be taken for its own."""
    process = this_process()
    return f"{process}#{number}" if process else ""


def is_gone(owner: str | None, number: int) -> bool:
    """Whether trial ``number``'s owner, stamped ``owner``, surely no longer runs: it was
    on this machine and in this PID namespace, and its PID is free or taken by a newer
    process. A stamp of another trial, another machine or none at all: ``False``."""
    process, _, stamped = (owner or "").partition("#")
    parts = process.split("/")
    if stamped != str(number) or len(parts) != 4 or not parts[2].isdigit():
        return False
    if "/".join(parts[:2]) != _machine():
        return False
    return _start_time(int(parts[2])) != parts[3]


def this_process() -> str:
    """This process: machine, PID namespace, PID and start time; "" if unknown. Not
    cached: a forked child is another process."""
    where = _machine()
    start = _start_time(os.getpid())
    return f"{where}/{os.getpid()}/{start}" if where and start else ""


@cache
def _machine() -> str:
    """This boot of this machine and this PID namespace; "" if unknown."""
    try:
        boot = (_PROC / "sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink(_PROC / "self/ns/pid")
    except OSError:
        return ""
    return f"{boot}/{namespace}"


def _start_time(pid: int) -> str:
    """When process ``pid`` started (clock ticks since boot); "" if there is none, or
    only its zombie (ended, not yet reaped by its parent)."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return ""
    # The command name (field 2) may hold spaces and parentheses: fields after its ")".
    fields = stat.rsplit(")", 1)[1].split()
    return "" if fields[0] == "Z" else fields[19]
