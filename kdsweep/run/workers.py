"""``--workers N``: ``kdsweep worker`` processes on this machine sharing one study, one GPU
each when there are several."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import torch

from kdsweep.errors import KdsweepError
from kdsweep.run.locations import STORAGE_ENV, TRACKING_ENV, RunOptions
from kdsweep.run.plan import Plan


def worker_command(plan: Plan, options: RunOptions) -> list[str]:
    """The command line of one worker of the plan's study (no store URL on it)."""
    command = [
        sys.executable,
        "-m",
        "kdsweep",
        "worker",
        str(plan.study.path),
        "--results",
        str(plan.locations.results),
    ]
    for flag, value in (
        ("--n-trials", options.n_trials),
        ("--timeout", options.timeout),
        ("--device", options.device),
    ):
        if value is not None:
            command += [flag, str(value)]
    if options.graceful:
        command.append("--graceful")
    for plugin in plan.study.extra_plugins:
        command += ["--plugin", plugin]
    return command


def run_workers(plan: Plan, options: RunOptions) -> None:
    """Start ``plan.workers`` workers and wait for them; Ctrl-C is passed on to each."""
    command = worker_command(plan, options)
    gpus = torch.cuda.device_count()
    processes = []
    for number in range(plan.workers):
        # The stores' URLs go through the environment: ps shows command lines to anyone.
        env = {
            **os.environ,
            STORAGE_ENV: plan.locations.storage,
            TRACKING_ENV: plan.locations.tracking_uri,
        }
        if gpus > 1:
            env["CUDA_VISIBLE_DEVICES"] = str(number % gpus)
        processes.append(subprocess.Popen(command, env=env))
    try:
        codes = [process.wait() for process in processes]
    except KeyboardInterrupt:
        for process in processes:
            process.send_signal(signal.SIGINT)
        for process in processes:
            process.wait()
        raise
    if any(codes):
        raise KdsweepError(f"worker exit codes: {codes}")
