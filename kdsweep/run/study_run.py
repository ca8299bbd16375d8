"""Runs a study end to end: plan (every check) -> stores -> teachers and baselines ->
the search loop over trials -> repeats -> summary.

The one module that ties the trainer, the search loop and the tracker together; each is
used through its own layer.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from kdsweep.run.ahead import TrainedAhead
from kdsweep.run.display import Display
from kdsweep.run.keep import StudentKeeper, finish_quietly
from kdsweep.run.locations import RunOptions
from kdsweep.run.overview import describe_study, show_runs
from kdsweep.run.plan import Plan, prepare, shared_paths
from kdsweep.run.processes import ReferenceJob, TrainerPool, TrainerSpec, fork_is_safe
from kdsweep.run.reconcile import reconcile
from kdsweep.run.references import Baselines, Recorder, train_teachers
from kdsweep.run.repeats import Repeats
from kdsweep.run.signals import StopSignals
from kdsweep.run.stores import OpeningStores, stores_failing_as
from kdsweep.run.summary import StudySummary, summarise
from kdsweep.run.trials import TrialRuns
from kdsweep.run.workers import run_workers
from kdsweep.search.loop import Fusion, run_trials
from kdsweep.search.study import finished_trials
from kdsweep.search.trial import Outcome
from kdsweep.study.study import Study
from kdsweep.text import redact_url
from kdsweep.timeline import phase
from kdsweep.track.tracker import Tracker


def run_study(study: Study, options: RunOptions, display: Display | None = None) -> StudySummary:
    """Prepare everything (all errors first), then train: teacher, baselines, trials. The
    stores open while the teacher and the baselines train (in the trainer processes, side
    by side, when there are several jobs)."""
    display = display or Display()
    with phase("plan"):
        plan = prepare(study, options)
    widths = [study.resolve({"student.width": width}) for width in study.widths()]
    for settings in widths if plan.workers == 1 else ():  # alone, before anything trains
        plan.trainer.latency(settings)
    with stores_failing_as(plan.locations), _trainer_processes(plan) as pool:
        stores = _Stores(OpeningStores(plan), plan, display)  # after the fork: a thread
        ahead = TrainedAhead(stores.recorder, pool, _reference_jobs(plan)) if pool else None
        for settings in widths if pool else ():  # while the trainers train the references
            plan.trainer.costs(settings)
        return _run(plan, options, stores, pool, ahead)


class _Stores:
    """The stores as they open: the first use waits for them, then brings MLflow in line
    with Optuna after a crash (before anything new is written) and stores the runs view."""

    def __init__(self, opening: OpeningStores, plan: Plan, display: Display) -> None:
        self.opening, self.plan, self.display = opening, plan, display
        self.recorder = Recorder(self.tracker, display, plan.trainer)
        self._ready = False

    def get(self) -> tuple[Any, Tracker]:
        optuna_study, tracker = self.opening.get()
        if not self._ready:
            reconcile(optuna_study, tracker)  # after a crash, before anything new
            show_runs(tracker, self.plan.study)
            self._ready = True
        return optuna_study, tracker

    def tracker(self) -> Tracker:
        return self.get()[1]


def _reference_jobs(plan: Plan) -> list[ReferenceJob]:
    """The teachers and the baselines at the study's seed that the run starts with."""
    study, base = plan.study, plan.trainer.base
    teachers = range(len(base.teachers)) if plan.needs_teacher else ()
    widths = study.widths() if study.settings.baseline else ()
    return [
        *(ReferenceJob("teacher", number=number) for number in teachers),
        *(ReferenceJob("baseline", width=width, seed=base.train.seed) for width in widths),
    ]


def _run(
    plan: Plan,
    options: RunOptions,
    stores: _Stores,
    pool: TrainerPool | None,
    ahead: TrainedAhead | None,
) -> StudySummary:
    study, locations, trainer = plan.study, plan.locations, plan.trainer
    display, recorder = stores.display, stores.recorder
    trained = ahead.take if ahead is not None else _trained_here
    outcomes: list[Outcome] = []
    status = "FAILED"  # the study run's status if anything below raises
    with display:
        try:
            display.stage(
                f"study [bold]{study.settings.name}[/] on {plan.device}: optuna "
                f"{redact_url(locations.storage)}, mlflow {redact_url(locations.tracking_uri)}"
            )
            teachers = train_teachers(recorder, trained) if plan.needs_teacher else []
            baselines = Baselines(recorder, trained) if study.settings.baseline else None
            for width in study.widths() if baselines else ():
                baselines.get(width, trainer.base.train.seed)
            optuna_study, tracker = stores.get()
            display.trials(plan.loop.n_trials, finished_trials(optuna_study))
            keeper = StudentKeeper(trainer, tracker)
            trials = TrialRuns(trainer, tracker, display, baselines, keeper)
            trials.pool = pool
            if plan.workers > 1:
                display.stage(f"starting {plan.workers} worker processes")
                run_workers(plan, options)
            else:
                with phase("trials"):
                    outcomes = _search(plan, optuna_study, trials, display)
            if study.settings.repeats:
                trials.pool = None  # repeats train in this process
                repeats = Repeats(recorder, baselines)
                optuna_study.set_user_attr("repeats", repeats.run(optuna_study))
            finish_quietly(keeper, optuna_study)
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            with contextlib.suppress(BaseException):  # the stores may be what failed
                optuna_study, tracker = stores.get()
                reconcile(optuna_study, tracker)
                tracker.close(status)
    references = (teachers[0] if teachers else None, baselines.at_study_seed() if baselines else {})
    summary = summarise(optuna_study, study, locations, references, outcomes)
    with contextlib.suppress(Exception):  # a description is not worth failing a study for
        describe_study(tracker, study, summary)
    return summary


def _trained_here(job: ReferenceJob) -> None:
    """Without trainer processes every reference trains in this process."""
    return None


def _search(plan: Plan, optuna_study: object, trials: TrialRuns, display: Display) -> list[Outcome]:
    """The trials of this process: measured costs first, then the search loop."""
    study = plan.study
    loop = plan.loop
    if plan.fuse > 1:
        loop = replace(loop, fusion=Fusion(plan.fuse, trials.group, shared_paths(study)))
    with StopSignals(plan.graceful) as signals:
        return run_trials(
            optuna_study,
            loop,
            trials,
            launch=trials.launch if trials.pool is not None else None,
            on_outcome=lambda o: display.outcome(o.number, o.state.name, o.reason),
            stop=lambda: signals.requested,
        )


@contextmanager
def _trainer_processes(plan: Plan) -> Iterator[TrainerPool | None]:
    """With several jobs, the teachers, the baselines and the trials train in trainer
    processes, each with its share of the CPU cores for its operations; this process
    keeps Optuna and MLflow. Started before any other thread exists (they may be forks)."""
    jobs = plan.loop.jobs
    if jobs == 1 or plan.workers > 1:
        yield None
        return
    threads = max(1, len(os.sched_getaffinity(0)) // jobs)
    study = plan.study
    spec = TrainerSpec(
        str(study.path), study.extra_plugins, str(plan.device), str(plan.locations.cache), threads
    )
    fork = fork_is_safe(plan.device, threads)
    pool = TrainerPool(spec, jobs, plan.trainer if fork else None)
    try:
        yield pool
    except BaseException:
        pool.close(now=True)  # interrupted or failed: what is still training is not wanted
        raise
    pool.close()
