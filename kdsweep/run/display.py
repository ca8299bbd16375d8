"""Terminal output while a study runs: progress of trials and epochs, stage lines (rich)."""

from __future__ import annotations

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

Bar = TaskID  # a run's epoch bar


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
