"""How the ``kdsweep`` command ends: once its work is done and flushed, the process exits
without tearing down the interpreter module by module. That teardown (freeing torch,
MLflow, SQLAlchemy and their thousands of objects) took 2.5-2.8 s after a digits study on
the 2-core machine, longer than the study's baselines; nothing in it writes anything.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from collections.abc import Callable


def run_and_exit(main: Callable[[], int]) -> None:
    """Run ``main``, then end the process with its exit status: the exit handlers run
    (log flushes, MLflow's, multiprocessing's) and threads that keep the process alive
    are waited for, as at a normal exit; only the interpreter's teardown is skipped."""
    try:
        code = main()
    except SystemExit as exc:  # argparse's --help, --version and usage errors
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing to say there
            stream.flush()
    os._exit(code)
