"""Wall time of every digits study under studies/, each from an empty results folder
(so its teacher and baselines are trained too), run as a user runs it.

    python bench/study_times.py [--studies studies/feature.toml ...]

Prints a Markdown table: study, trials finished, wall seconds.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parent.parent


def digits_studies() -> list[Path]:
    """Study files that use the bundled digits dataset (the default)."""
    return [
        p
        for p in sorted((ROOT / "studies").glob("*.toml"))
        if "dataset =" not in p.read_text() or 'dataset = "digits"' in p.read_text()
    ]


def time_study(path: Path) -> tuple[int, float]:
    """(finished trials, wall seconds) of ``kdsweep run path`` in a fresh results folder."""
    with tempfile.TemporaryDirectory() as results:
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "kdsweep", "run", str(path), "--results", results],
            check=True,
            capture_output=True,
        )
        wall = time.perf_counter() - started
        storage = f"sqlite:///{Path(results) / 'optuna.db'}"
        (summary,) = optuna.get_all_study_summaries(storage)
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        finished = sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials)
    return finished, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--studies", nargs="*", type=Path, default=None)
    args = parser.parse_args()
    print("| study | trials finished | wall time (s) |")
    print("| --- | --- | --- |")
    for path in args.studies or digits_studies():
        finished, wall = time_study(path)
        name = path.relative_to(ROOT) if path.is_absolute() else path
        print(f"| {name} | {finished} | {wall:.1f} |", flush=True)


if __name__ == "__main__":
    main()
