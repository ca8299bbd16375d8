"""Start-up of the ``kdsweep`` command: the wall time of ``kdsweep --help`` and of
``kdsweep plugins`` (every plugin loaded, its components listed), each the median of
several runs in fresh processes, one after another.

    python bench/startup.py [--repeats 5]

Prints a Markdown table: command, median and every run, in seconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

COMMANDS = (["--help"], ["plugins"])


def wall_times(arguments: list[str], repeats: int) -> list[float]:
    """Seconds from starting ``kdsweep ARGUMENTS`` to its exit, ``repeats`` times."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "kdsweep", *arguments],
            check=True,
            stdout=subprocess.DEVNULL,
            env={**os.environ, "COLUMNS": "80"},
        )
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print("| command | median (s) | runs (s) |")
    print("| --- | --- | --- |")
    for arguments in COMMANDS:
        times = wall_times(arguments, args.repeats)
        runs = ", ".join(f"{t:.2f}" for t in times)
        print(f"| kdsweep {' '.join(arguments)} | {statistics.median(times):.2f} | {runs} |")


if __name__ == "__main__":
    main()
