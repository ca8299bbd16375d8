"""Baselines sent to the trainer processes at once (with ``jobs`` > 1), shared among
them round-robin, so that they train side by side; their records are taken when the run
records them, and the trials then reuse them from the cache.
"""

from __future__ import annotations

from collections.abc import Sequence

from kdsweep.errors import RunFailure
from kdsweep.run.processes import (
    BaselineJob,
    TrainerDied,
    TrainerPool,
    TrainerProcess,
    wait_all,
)
from kdsweep.run.references import Progress, Recorder, baseline_label
from kdsweep.train.references import ModelRecord


class TrainedAhead:
    """Baselines sent to the pool's trainers; :meth:`take` waits for one's record."""

    def __init__(self, recorder: Recorder, pool: TrainerPool, jobs: Sequence[BaselineJob]):
        self.trainers = pool.started()
        self._sent: dict[BaselineJob, tuple[TrainerProcess, int, Progress]] = {}
        for number, job in enumerate(jobs):
            trainer = self.trainers[number % len(self.trainers)]
            progress, on_epoch = recorder.start("baseline", baseline_label(job.width, job.seed))
            self._sent[job] = (trainer, trainer.submit(job, [on_epoch]), progress)

    def take(self, job: BaselineJob) -> tuple[Progress, ModelRecord] | None:
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
