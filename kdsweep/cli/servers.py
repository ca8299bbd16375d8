"""Web servers the commands start (the MLflow UI, optuna-dashboard): each runs in its own
session, so that Ctrl-C and SIGTERM stop it with every process it started, with one line
and no traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence

from kdsweep.run.signals import EXIT_INTERRUPTED

STOP_GRACE_S = 10.0  # how long a server has to stop after SIGTERM before SIGKILL


def serve(command: Sequence[str], env: Mapping[str, str], what: str, url: str) -> int:
    """Run ``command`` until it ends, or until this process gets SIGINT or SIGTERM: then
    stop its whole process group and return 130."""
    received: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda signum, frame: received.append(signum))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        server = subprocess.Popen(list(command), env=dict(env), start_new_session=True)
        print(f"{what} on {url} (Ctrl-C to stop)", flush=True)
        while server.poll() is None and not received:
            time.sleep(0.2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not received:
        return server.returncode
    stop_group(server)
    print(f"kdsweep: {what} stopped", file=sys.stderr)
    return EXIT_INTERRUPTED


def stop_group(server: subprocess.Popen) -> None:
    """SIGTERM to the server's process group, SIGKILL to what is left after the grace."""
    for sig, wait in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            server.poll()
            if not _group_alive(server.pid):
                return
            time.sleep(0.1)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True
