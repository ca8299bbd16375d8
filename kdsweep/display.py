"""Terminal output: progress of trials and epochs, and the closing table (rich)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

Bar = TaskID  # a run's epoch bar


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


class Display:
    """Progress bars for trials and epochs; plain lines for stages and outcomes."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        if not self.console.is_terminal:
            self.console.width = max(self.console.width, 140)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self._trials: Any = None

    def __enter__(self) -> Display:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def stage(self, message: str) -> None:
        """A line above the bars."""
        self.progress.console.print(message)

    def trials(self, total: int, done: int) -> None:
        """Show the trial bar."""
        self._trials = self.progress.add_task("trials", total=total, completed=done, status="")

    def run_started(self, description: str, epochs: int | None) -> Bar:
        """A new epoch bar for a training run; it shows until :meth:`run_ended`."""
        return self.progress.add_task(description, total=epochs, status="")

    def epoch(self, bar: Bar, epoch: int, val_accuracy: float, extra: str = "") -> None:
        """Advance a run's epoch bar."""
        status = f"val {val_accuracy:.3f} {extra}".strip()
        self.progress.update(bar, completed=epoch + 1, status=status)

    def run_ended(self, bar: Bar) -> None:
        """Remove a run's epoch bar."""
        self.progress.remove_task(bar)

    def outcome(self, number: int, state: str, detail: str) -> None:
        """A line per finished trial, and the trial bar advanced."""
        self.stage(f"trial {number:>3} {state.lower():<8} {detail}")
        if self._trials is not None and state in ("COMPLETE", "PRUNED"):
            self.progress.advance(self._trials)

    def summary(self, title: str, rows: Sequence[Row]) -> None:
        """The closing table: teacher, baselines and best trials side by side."""
        table = Table(title=title)
        for header in (
            "run",
            "width",
            "settings",
            "val acc",
            "test acc",
            "vs baseline",
            "params",
            "train s",
        ):
            table.add_column(header, justify="left" if header in ("run", "settings") else "right")
        for row in rows:
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
        self.console.print(table)
