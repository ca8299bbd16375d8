"""Teachers and no-distillation baselines: trained (or loaded) by the trainer, each
recorded once per study as an MLflow run, and shown on the terminal."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kdsweep.faults import fault_point
from kdsweep.run.display import Display
from kdsweep.run.processes import BaselineJob
from kdsweep.run.records import component_tags
from kdsweep.study.settings import ModelChoice
from kdsweep.track import tags
from kdsweep.track.tracker import Tracker
from kdsweep.train.fit import EpochReport
from kdsweep.train.references import ModelRecord
from kdsweep.train.trainer import StudyTrainer


@dataclass(frozen=True)
class Progress:
    """A reference run being trained: its role, label and terminal bar."""

    role: str
    label: str
    bar: Any


@dataclass(frozen=True)
class Recorder:
    """What recording a reference run needs: the store (given when it is open: the
    references may train while it opens), the terminal and the trainer."""

    stores: Callable[[], Tracker]
    display: Display
    trainer: StudyTrainer

    @property
    def tracker(self) -> Tracker:
        """The study's MLflow tracker (waits until the store is open)."""
        return self.stores()

    def record(
        self,
        role: str,
        label: str,
        params: Mapping[str, Any],
        train: Callable[[Callable[[EpochReport], None]], ModelRecord],
    ) -> ModelRecord:
        """Train (or load) a teacher or a baseline, and record it once per study in MLflow."""
        progress, on_epoch = self.start(role, label)
        return self.finish(progress, params, train(on_epoch))

    def start(self, role: str, label: str) -> tuple[Progress, Callable[[EpochReport], None]]:
        """Show a reference run's bar; the epoch callback that advances it."""
        bar = self.display.run_started(label, None)

        def on_epoch(report: EpochReport) -> None:
            fault_point(f"{role}_epoch")
            self.display.epoch(bar, report.epoch, report.val_accuracy)

        return Progress(role, label, bar), on_epoch

    def finish(
        self, progress: Progress, params: Mapping[str, Any], record: ModelRecord
    ) -> ModelRecord:
        """Show a trained reference and record it in MLflow, once per study."""
        role, label = progress.role, progress.label
        self.display.run_ended(progress.bar)
        self.display.stage(
            f"{label}: val {record.val_accuracy:.4f} test {record.test_accuracy:.4f} "
            f"params {record.params:,}" + (" (cached)" if record.cached else "")
        )
        if not self.tracker.find_runs(role=role, **{tags.KEY: record.key}):
            base = self.trainer.base
            run_tags = {**component_tags(self.trainer.study, base), tags.KEY: record.key}
            run_id = self.tracker.start_run(role, label, {**base.flat(), **params}, run_tags)
            self.tracker.end_run(run_id, "FINISHED", record.metrics(), tags.ended("COMPLETE"))
        return record


def teacher_label(number: int, choice: ModelChoice) -> str:
    """How teacher ``number`` is named on the terminal and in MLflow."""
    return "teacher" if number == 0 else f"teacher {number}: {choice}"


def baseline_label(width: float, seed: int) -> str:
    """How the baseline at ``width`` trained with ``seed`` is named."""
    return f"baseline (no KD) width {width} seed {seed}"


# A baseline trained elsewhere (a trainer process): its bar and record, or None when it
# was not sent there (then it trains in this process).
Trained = Callable[[BaselineJob], tuple[Progress, ModelRecord] | None]


def _not_ahead(job: BaselineJob) -> None:
    return None


TrainedTeacher = tuple[Progress, ModelRecord]


def train_teachers(recorder: Recorder) -> list[TrainedTeacher]:
    """Train (or load) every teacher, with its bar; recorded later (:func:`record_teachers`),
    once the stores are open."""
    trainer = recorder.trainer
    trained = []
    for number, choice in enumerate(trainer.base.teachers):
        progress, on_epoch = recorder.start("teacher", teacher_label(number, choice))
        trained.append((progress, trainer.teacher(number, on_epoch)))
    return trained


def record_teachers(recorder: Recorder, trained: list[TrainedTeacher]) -> list[ModelRecord]:
    """Record the trained teachers; the first one's metrics also go on the study's run."""
    choices = recorder.trainer.base.teachers
    records = [
        recorder.finish(progress, {"teacher.model": c.model, "teacher.width": c.width}, record)
        for (progress, record), c in zip(trained, choices, strict=True)
    ]
    first, tracker = records[0], recorder.tracker
    tracker.log(
        tracker.parent_id,
        {f"teacher_{k}": v for k, v in first.metrics().items()},
        {"kdsweep.teacher": first.model, "kdsweep.teacher.width": str(first.width)},
    )
    return records


class Baselines:
    """No-distillation baselines by (width, seed): trained (or loaded) on first use, or
    taken from a trainer process that trained them ahead, and recorded once per study in
    MLflow."""

    def __init__(self, recorder: Recorder, trained: Trained = _not_ahead) -> None:
        self.recorder = recorder
        self.trained = trained
        self.records: dict[tuple[float, int], ModelRecord] = {}
        self.lock = threading.Lock()  # trials in several threads may need the same one

    def get(self, width: float, seed: int) -> ModelRecord:
        """The baseline of the student at ``width`` trained with ``seed``."""
        with self.lock:
            if (width, seed) not in self.records:
                trainer = self.recorder.trainer
                params = {"loss.name": "none", "student.width": width, "train.seed": seed}
                ahead = self.trained(BaselineJob(width, seed))
                if ahead is not None:
                    record = self.recorder.finish(ahead[0], params, ahead[1])
                else:
                    record = self.recorder.record(
                        "baseline",
                        baseline_label(width, seed),
                        params,
                        lambda on_epoch: trainer.baseline(width, on_epoch, seed),
                    )
                self.records[width, seed] = record
            return self.records[width, seed]

    def at_study_seed(self) -> dict[float, ModelRecord]:
        """Baselines trained with the study's seed, by width."""
        seed = self.recorder.trainer.base.train.seed
        return {width: record for (width, s), record in self.records.items() if s == seed}
