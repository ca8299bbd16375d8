"""Starting and stopping the command's web servers in tests (``kdsweep ui``, ``kdsweep
dashboard``), and finding the processes they started."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(*argv: str, ready: str, timeout: float = 120) -> tuple[subprocess.Popen, str]:
    """``python -m kdsweep *argv``, once ``ready`` (a path on the server) answers 200;
    returns the process and the address it printed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "kdsweep", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = process.stdout.readline()
    found = re.search(r" on (http://\S+)", first)
    assert found, first + process.stderr.read()
    url = found.group(1)
    base = re.match(r"http://[^/]+", url).group(0)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{base}{ready}", timeout=2) as response:
                if response.status == 200:
                    return process, url
        except OSError:
            pass
        assert process.poll() is None, process.stderr.read()[-3000:]
        assert time.monotonic() < deadline, f"{argv[0]} did not start"
        time.sleep(0.5)


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pids: set[int]) -> set[int]:
    """Those of ``pids`` still running (zombies count as gone)."""
    running = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            running.add(pid)
    return running


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> tuple[str, str]:
    """Send ``sig`` to the command (not its group) and collect its output."""
    os.kill(process.pid, sig)
    return process.communicate(timeout=60)
