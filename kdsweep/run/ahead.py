"""Teachers and baselines sent to the trainer processes at the start of a run (with
``jobs`` > 1), so that they train side by side while this process opens the stores:
each teacher on a trainer of its own, the baselines on the trainers left (or shared
round-robin when every trainer has a teacher). Their records are taken when the run
records them; trials then reuse them from the cache.
"""

from __future__ import annotations

from collections.abc import Sequence

from kdsweep.errors import RunFailure
from kdsweep.run.processes import (
    ReferenceJob,
    TrainerDied,
    TrainerPool,
    TrainerProcess,
    wait_all,
)
from kdsweep.run.references import Progress, Recorder, baseline_label, teacher_label
from kdsweep.train.references import ModelRecord


class TrainedAhead:
    """Reference jobs sent to the pool's trainers; :meth:`take` waits for one's record."""

    def __init__(self, recorder: Recorder, pool: TrainerPool, jobs: Sequence[ReferenceJob]):
        self.trainers = pool.started()
        self._sent: dict[ReferenceJob, tuple[TrainerProcess, int, Progress]] = {}
        teachers = [job for job in jobs if job.role == "teacher"]
        others = self.trainers[len(teachers) :] or self.trainers
        placed = [
            *zip(teachers, _cycle(self.trainers, len(teachers)), strict=True),
            *zip(
                [job for job in jobs if job.role != "teacher"],
                _cycle(others, len(jobs) - len(teachers)),
                strict=True,
            ),
        ]
        choices = recorder.trainer.base.teachers
        for job, trainer in placed:
            label = (
                teacher_label(job.number, choices[job.number])
                if job.role == "teacher"
                else baseline_label(job.width, job.seed)
            )
            progress, on_epoch = recorder.start(job.role, label)
            self._sent[job] = (trainer, trainer.submit(job, [on_epoch]), progress)

    def take(self, job: ReferenceJob) -> tuple[Progress, ModelRecord] | None:
        """The bar and record of ``job`` once trained; ``None`` if it was not sent (or was
        taken already). A job that failed in its trainer raises its error here."""
        sent = self._sent.pop(job, None)
        if sent is None:
            return None
        trainer, ticket, progress = sent
        wait_all(self.trainers)  # every trainer's messages, so none waits on its pipe
        (outcome,) = trainer.wait(ticket)
        if isinstance(outcome, TrainerDied):
            raise RunFailure(f"{progress.label}: {outcome}; the study can be resumed")
        if isinstance(outcome, BaseException):
            raise outcome
        return progress, outcome


def _cycle(trainers: Sequence[TrainerProcess], count: int) -> list[TrainerProcess]:
    return [trainers[k % len(trainers)] for k in range(count)]
