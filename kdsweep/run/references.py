"""Teachers and no-distillation baselines: trained (or loaded) by the trainer, each
recorded once per study as an MLflow run, and shown on the terminal."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kdsweep.faults import fault_point
from kdsweep.run.display import Display
from kdsweep.run.records import component_tags
from kdsweep.track import tags
from kdsweep.track.tracker import Tracker
from kdsweep.train.fit import EpochReport
from kdsweep.train.references import ModelRecord
from kdsweep.train.trainer import StudyTrainer


@dataclass(frozen=True)
class Recorder:
    """What recording a reference run needs: the store, the terminal and the trainer."""

    tracker: Tracker
    display: Display
    trainer: StudyTrainer

    def record(
        self,
        role: str,
        label: str,
        params: Mapping[str, Any],
        train: Callable[[Callable[[EpochReport], None]], ModelRecord],
    ) -> ModelRecord:
        """Train (or load) a teacher or a baseline, and record it once per study in MLflow."""
        bar = self.display.run_started(label, None)

        def on_epoch(report: EpochReport) -> None:
            fault_point(f"{role}_epoch")
            self.display.epoch(bar, report.epoch, report.val_accuracy)

        record = train(on_epoch)
        self.display.run_ended(bar)
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


def train_teachers(recorder: Recorder) -> list[ModelRecord]:
    """Train (or load) every teacher; the first one's metrics also go on the study's run."""
    trainer, tracker = recorder.trainer, recorder.tracker
    records = []
    for number, choice in enumerate(trainer.base.teachers):
        records.append(
            recorder.record(
                "teacher",
                "teacher" if number == 0 else f"teacher {number}: {choice}",
                {"teacher.model": choice.model, "teacher.width": choice.width},
                lambda on_epoch, number=number: trainer.teacher(number, on_epoch),
            )
        )
    first = records[0]
    tracker.log(
        tracker.parent_id,
        {f"teacher_{k}": v for k, v in first.metrics().items()},
        {"kdsweep.teacher": first.model, "kdsweep.teacher.width": str(first.width)},
    )
    return records


class Baselines:
    """No-distillation baselines by (width, seed): trained (or loaded) on first use and
    recorded once per study in MLflow."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.records: dict[tuple[float, int], ModelRecord] = {}
        self.lock = threading.Lock()  # trials in several threads may need the same one

    def get(self, width: float, seed: int) -> ModelRecord:
        """The baseline of the student at ``width`` trained with ``seed``."""
        with self.lock:
            if (width, seed) not in self.records:
                trainer = self.recorder.trainer
                self.records[width, seed] = self.recorder.record(
                    "baseline",
                    f"baseline (no KD) width {width} seed {seed}",
                    {"loss.name": "none", "student.width": width, "train.seed": seed},
                    lambda on_epoch: trainer.baseline(width, on_epoch, seed),
                )
            return self.records[width, seed]

    def at_study_seed(self) -> dict[float, ModelRecord]:
        """Baselines trained with the study's seed, by width."""
        seed = self.recorder.trainer.base.train.seed
        return {width: record for (width, s), record in self.records.items() if s == seed}
