"""Per-trial orchestration overhead as a study grows, with SQLite and PostgreSQL storage.

A study of near-empty trials (an MLP of width 2, one epoch of one batch on digits, loss
``ce``, TPE, no pruner, no baselines) runs ``--trials`` trials against each Optuna
storage; MLflow records every trial in a local SQLite store in both cases. A trial's
overhead is the time between the previous trial's end and its own, less its training and
evaluation time: Optuna (ask, suggest, tell, and TPE's sampling, which grows with the
study), MLflow (run, params, metrics) and kdsweep's dispatch. Printed as the mean per
trial over windows of the study (trials 1-100, 401-500, 901-1000, ...).

    python bench/overhead.py [--trials 1000] [--postgres postgresql://postgres@127.0.0.1:5432]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import optuna
import psycopg

from kdsweep.run.display import Display
from kdsweep.run.locations import RunOptions
from kdsweep.run.study_run import run_study
from kdsweep.study.load import load_study

STUDY = """
[study]
name = "overhead"
n_trials = {trials}
pruner = "none"
baseline = false
seed = 0

[student]
model = "mlp"
width = 2

[train]
epochs = 1
batch_size = 2048

[loss]
name = "ce"

[search]
lr = { low = 0.001, high = 0.5, log = true }
momentum = { low = 0.0, high = 0.95 }
"""


def measure(folder: Path, storage: str, trials: int) -> list[float]:
    """Each trial's overhead in seconds, in trial order (the first one has none)."""
    path = folder / "study.toml"
    path.write_text(textwrap.dedent(STUDY.replace("{trials}", str(trials))))
    quiet = Display()
    quiet.console.quiet = True
    run_study(
        load_study(path), RunOptions(results=str(folder), storage=storage, device="cpu"), quiet
    )
    study = optuna.load_study(study_name="overhead", storage=storage)
    done = sorted(study.trials, key=lambda t: t.datetime_complete)
    return [
        (later.datetime_complete - earlier.datetime_complete).total_seconds()
        - later.user_attrs["metrics"]["train_time_s"]
        for earlier, later in itertools.pairwise(done)
    ]


def windows(overheads: list[float], size: int = 100) -> dict[str, float]:
    """Mean overhead (ms) per window of ``size`` trials: first, middle and last."""
    count = len(overheads) + 1
    starts = sorted({0, max(0, count // 2 - size), max(0, count - size)})
    return {
        f"trials {start + 1}-{min(start + size, count)}": 1000
        * statistics.mean(overheads[max(0, start - 1) : start + size - 1])
        for start in starts
    }


def postgres_database(server: str) -> tuple[str, str]:
    """A fresh database on ``server``: (its URL, its name)."""
    name = f"kdsweep_overhead_{uuid.uuid4().hex[:8]}"
    _admin(server, f"CREATE DATABASE {name}")
    return f"{server}/{name}", name


def _admin(server: str, sql: str) -> None:
    with psycopg.connect(f"{server}/postgres", autocommit=True) as connection:
        connection.execute(sql)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        sqlite = f"sqlite:///{Path(folder) / 'optuna.db'}"
        results["sqlite"] = windows(measure(Path(folder), sqlite, args.trials))
        print(f"sqlite done in {time.perf_counter() - started:.0f} s", flush=True)
    if args.postgres:
        url, name = postgres_database(args.postgres)
        try:
            with tempfile.TemporaryDirectory() as folder:
                results["postgresql"] = windows(measure(Path(folder), url, args.trials))
        finally:
            _admin(args.postgres, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    for storage, figures in results.items():
        shown = ", ".join(f"{window}: {ms:.0f} ms" for window, ms in figures.items())
        print(f"{storage:>10}: overhead per trial, {shown}")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
