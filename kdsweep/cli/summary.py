"""The closing table of ``kdsweep run``: teacher, then per width the no-distillation
baseline and the best trial, side by side."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from kdsweep.run.summary import StudySummary
from kdsweep.study.space import WIDTH

HEADERS = ("run", "width", "settings", "val acc", "test acc", "vs baseline", "params", "train s")


@dataclass(frozen=True)
class Row:
    """One line of the closing table."""

    label: str
    width: Any
    settings: str
    val_accuracy: float
    test_accuracy: float
    params: int
    train_time_s: float
    gain: float | None = None


def rows(summary: StudySummary) -> list[Row]:
    """Teacher, then per width: the no-distillation baseline and the best trial."""
    shown: list[Row] = []
    if summary.teacher is not None:
        t = summary.teacher
        shown.append(
            Row(
                "teacher",
                t.width,
                t.model,
                t.val_accuracy,
                t.test_accuracy,
                t.params,
                t.train_time_s,
            )
        )
    for width in sorted({*summary.baselines, *summary.best}):
        baseline = summary.baselines.get(width)
        if baseline is not None:
            shown.append(
                Row(
                    "baseline (no KD)",
                    width,
                    baseline.model,
                    baseline.val_accuracy,
                    baseline.test_accuracy,
                    baseline.params,
                    baseline.train_time_s,
                )
            )
        trial = summary.best.get(width)
        if trial is not None:
            params = {k: v for k, v in trial.params.items() if k != WIDTH}
            names = short_names(list(params))
            settings = ", ".join(f"{names[k]}={_short(v)}" for k, v in params.items())
            gain = None if baseline is None else trial.test_accuracy - baseline.test_accuracy
            shown.append(
                Row(
                    f"best: trial {trial.number}",
                    width,
                    settings,
                    trial.val_accuracy,
                    trial.test_accuracy,
                    trial.n_params,
                    trial.train_time_s,
                    gain,
                )
            )
    return shown


def print_summary(console: Console, title: str, summary: StudySummary) -> None:
    """The closing table on ``console``."""
    table = Table(title=title)
    for header in HEADERS:
        table.add_column(header, justify="left" if header in ("run", "settings") else "right")
    for row in rows(summary):
        gain = "" if row.gain is None else f"{row.gain * 100:+.2f} pt"
        table.add_row(
            row.label,
            str(row.width),
            row.settings,
            f"{row.val_accuracy:.4f}",
            f"{row.test_accuracy:.4f}",
            gain,
            f"{row.params:,}",
            f"{row.train_time_s:.2f}",
        )
    console.print(table)


def short_names(paths: list[str]) -> dict[str, str]:
    """The shortest dotted suffix of each path that no other path ends with."""
    names = {}
    for path in paths:
        parts = path.split(".")
        for size in range(1, len(parts) + 1):
            suffix = ".".join(parts[-size:])
            taken = any(
                other.endswith("." + suffix) or other == suffix for other in paths if other != path
            )
            if not taken and suffix != "name":  # "name" alone says too little
                break
        names[path] = suffix
    return names


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
