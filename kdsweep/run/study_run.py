"""Runs a study end to end: plan (every check) -> teachers (while the stores open) ->
baselines -> the search loop over trials -> repeats -> summary.

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
from kdsweep.run.processes import BaselineJob, TrainerPool, TrainerSpec, fork_is_safe
from kdsweep.run.reconcile import reconcile
from kdsweep.run.references import (
    Baselines,
    Recorder,
    TrainedTeacher,
    record_teachers,
    train_teachers,
)
from kdsweep.run.repeats import Repeats
from kdsweep.run.signals import StopSignals
from kdsweep.run.stores import OpeningStores, check_locations, stores_failing_as
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
from kdsweep.train.references import ModelRecord


def run_study(study: Study, options: RunOptions, display: Display | None = None) -> StudySummary:
    """Prepare everything (all errors first), then train: the teacher (on every core),
    the baselines (side by side in the trainer processes when there are several jobs,
    while a thread opens the stores), the trials."""
    display = display or Display()
    with phase("plan"):
        plan = prepare(study, options)
    for width in study.widths() if plan.workers == 1 else ():  # alone, before any training
        plan.trainer.latency(study.resolve({"student.width": width}))
    with stores_failing_as(plan.locations):
        check_locations(plan.locations)  # a server that does not answer: before training
        return _run(plan, options, _Stores(plan, display))


class _Stores:
    """The stores as they open: the first use waits for them, then brings MLflow in line
    with Optuna after a crash (before anything new is written) and stores the runs view."""

    def __init__(self, plan: Plan, display: Display) -> None:
        self.plan, self.display = plan, display
        self.recorder = Recorder(self.tracker, display, plan.trainer)
        self.opening: OpeningStores | None = None
        self._ready = False

    def open(self) -> None:
        """Start opening the stores (in a thread: after any fork)."""
        if self.opening is None:
            self.opening = OpeningStores(self.plan)

    def get(self) -> tuple[Any, Tracker]:
        """The Optuna study and the MLflow tracker, once open and in line."""
        self.open()
        optuna_study, tracker = self.opening.get()
        if not self._ready:
            reconcile(optuna_study, tracker)  # after a crash, before anything new
            show_runs(tracker, self.plan.study)
            self._ready = True
        return optuna_study, tracker

    def tracker(self) -> Tracker:
        """The MLflow tracker, once open."""
        return self.get()[1]


def _run(plan: Plan, options: RunOptions, stores: _Stores) -> StudySummary:
    study, locations, trainer = plan.study, plan.locations, plan.trainer
    display, recorder = stores.display, stores.recorder
    outcomes: list[Outcome] = []
    status = "FAILED"  # the study run's status if anything below raises
    with display:
        try:
            display.stage(
                f"study [bold]{study.settings.name}[/] on {plan.device}: optuna "
                f"{redact_url(locations.storage)}, mlflow {redact_url(locations.tracking_uri)}"
            )
            trained = train_teachers(recorder) if plan.needs_teacher else []  # every core
            with _trainer_processes(plan) as pool:  # forks: no other thread runs yet
                stores.open()
                teachers, baselines = _references(plan, recorder, pool, trained)
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
                if stores.opening is not None:  # else nothing was written to them
                    optuna_study, tracker = stores.get()
                    reconcile(optuna_study, tracker)
                    tracker.close(status)
    references = (teachers[0] if teachers else None, baselines.at_study_seed() if baselines else {})
    summary = summarise(optuna_study, study, locations, references, outcomes)
    with contextlib.suppress(Exception):  # a description is not worth failing a study for
        describe_study(tracker, study, summary)
    return summary


def _references(
    plan: Plan, recorder: Recorder, pool: TrainerPool | None, teachers: list[TrainedTeacher]
) -> tuple[list[ModelRecord], Baselines | None]:
    """Record the trained teachers and train (or load) and record the baselines at the
    study's seed, one per width: side by side in the trainer processes when there are
    some (while the stores open and the students' FLOPs are counted here), else here."""
    study, seed = plan.study, plan.trainer.base.train.seed
    widths = study.widths() if study.settings.baseline else []
    jobs = [BaselineJob(width, seed) for width in widths]
    ahead = TrainedAhead(recorder, pool, jobs) if pool is not None and jobs else None
    for width in study.widths():
        plan.trainer.costs(study.resolve({"student.width": width}))
    records = record_teachers(recorder, teachers) if teachers else []
    if not study.settings.baseline:
        return records, None
    baselines = Baselines(recorder, ahead.take) if ahead is not None else Baselines(recorder)
    for width in widths:
        baselines.get(width, seed)
    return records, baselines


def _search(plan: Plan, optuna_study: object, trials: TrialRuns, display: Display) -> list[Outcome]:
    """The trials of this process: measured costs first, then the search loop."""
    study = plan.study
    loop = plan.loop
    if plan.fuse > 1:
        shared = shared_paths(study, mixed_widths=plan.device.type == "cpu")
        loop = replace(loop, fusion=Fusion(plan.fuse, trials.group, shared))
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
    """With several jobs, the baselines and the trials train in trainer processes, each
    with its share of the CPU cores for its operations; this process keeps Optuna and
    MLflow. Started when no other thread runs: they may be forks of this process, which
    then hold its data and its teachers already."""
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
