"""The teachers and the baselines sent to the trainer processes at once (with ``jobs`` >
1), so that they train side by side: each teacher on a trainer of its own (a teacher costs
several baselines), the baselines shared round-robin among the trainers left (all of
them when the teachers took every one). Their records are taken when the run records
them; the trials then reuse them from the cache.
"""

from __future__ import annotations

from collections.abc import Sequence

from kdsweep.errors import RunFailure
from kdsweep.run.processes import (
    ReferenceJob,
    TeacherJob,
    TrainerDied,
    TrainerPool,
    TrainerProcess,
    wait_all,
)
from kdsweep.run.references import Progress, Recorder, baseline_label, teacher_label
from kdsweep.train.references import ModelRecord


def placed(jobs: Sequence[ReferenceJob], trainers: int) -> list[int]:
    """The trainer each job goes to: the teachers one per trainer, the baselines
    round-robin over the trainers no teacher took (over all when none is left)."""
    teachers = sum(isinstance(job, TeacherJob) for job in jobs)
    free = list(range(teachers, trainers)) or list(range(trainers))
    places, taught, taken = [], 0, 0
    for job in jobs:
        if isinstance(job, TeacherJob):
            places.append(taught % trainers)
            taught += 1
        else:
            places.append(free[taken % len(free)])
            taken += 1
    return places


class TrainedAhead:
    """References sent to the pool's trainers; :meth:`take` waits for one's record."""

    def __init__(self, recorder: Recorder, pool: TrainerPool, jobs: Sequence[ReferenceJob]):
        self.trainers = pool.started()
        self._sent: dict[ReferenceJob, tuple[TrainerProcess, int, Progress]] = {}
        choices = recorder.trainer.base.teachers
        for job, place in zip(jobs, placed(jobs, len(self.trainers)), strict=True):
            trainer = self.trainers[place]
            if isinstance(job, TeacherJob):
                role, label = "teacher", teacher_label(job.number, choices[job.number])
            else:
                role, label = "baseline", baseline_label(job.width, job.seed)
            progress, on_epoch = recorder.start(role, label)
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
