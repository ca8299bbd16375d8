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

from kdsweep.run.display import Display
from kdsweep.run.keep import StudentKeeper, finish_quietly
from kdsweep.run.locations import RunOptions
from kdsweep.run.overview import describe_study, show_runs
from kdsweep.run.plan import Plan, prepare, shared_paths
from kdsweep.run.processes import TrainerPool, TrainerSpec, fork_is_safe
from kdsweep.run.reconcile import reconcile
from kdsweep.run.references import Baselines, Recorder, train_teachers
from kdsweep.run.repeats import Repeats
from kdsweep.run.signals import StopSignals
from kdsweep.run.stores import open_stores, stores_failing_as
from kdsweep.run.summary import StudySummary, summarise
from kdsweep.run.trials import TrialRuns
from kdsweep.run.workers import run_workers
from kdsweep.search.loop import Fusion, run_trials
from kdsweep.search.study import finished_trials
from kdsweep.search.trial import Outcome
from kdsweep.study.study import Study
from kdsweep.text import redact_url
from kdsweep.track.tracker import Tracker


def run_study(study: Study, options: RunOptions, display: Display | None = None) -> StudySummary:
    """Prepare everything (all errors first), then train: teacher, baselines, trials."""
    display = display or Display()
    plan = prepare(study, options)
    with stores_failing_as(plan.locations):
        optuna_study, tracker = open_stores(plan)
        return _run(plan, options, display, (optuna_study, tracker))


def _run(
    plan: Plan, options: RunOptions, display: Display, stores: tuple[Any, Tracker]
) -> StudySummary:
    study, locations, trainer = plan.study, plan.locations, plan.trainer
    optuna_study, tracker = stores
    recorder = Recorder(tracker, display, trainer)
    outcomes: list[Outcome] = []
    status = "FAILED"  # the study run's status if anything below raises
    with display:
        try:
            reconcile(optuna_study, tracker)  # after a crash, before anything new
            show_runs(tracker, study)
            display.stage(
                f"study [bold]{study.settings.name}[/] on {plan.device}: optuna "
                f"{redact_url(locations.storage)}, mlflow {redact_url(locations.tracking_uri)}"
            )
            teachers = train_teachers(recorder) if plan.needs_teacher else []
            baselines = Baselines(recorder) if study.settings.baseline else None
            for width in study.widths() if baselines else ():
                baselines.get(width, trainer.base.train.seed)
            display.trials(plan.loop.n_trials, finished_trials(optuna_study))
            keeper = StudentKeeper(trainer, tracker)
            trials = TrialRuns(trainer, tracker, display, baselines, keeper)
            if plan.workers > 1:
                display.stage(f"starting {plan.workers} worker processes")
                run_workers(plan, options)
            else:
                outcomes = _search(plan, optuna_study, trials, display)
            if study.settings.repeats:
                repeats = Repeats(recorder, baselines)
                optuna_study.set_user_attr("repeats", repeats.run(optuna_study))
            finish_quietly(keeper, optuna_study)
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            with contextlib.suppress(Exception):  # the stores may be what failed
                reconcile(optuna_study, tracker)
            with contextlib.suppress(Exception):
                tracker.close(status)
    references = (teachers[0] if teachers else None, baselines.at_study_seed() if baselines else {})
    summary = summarise(optuna_study, study, locations, references, outcomes)
    with contextlib.suppress(Exception):  # a description is not worth failing a study for
        describe_study(tracker, study, summary)
    return summary


def _search(plan: Plan, optuna_study: object, trials: TrialRuns, display: Display) -> list[Outcome]:
    """The trials of this process: measured costs first, then the search loop."""
    study = plan.study
    for width in study.widths():  # measured now, not while trials train
        plan.trainer.costs(study.resolve({"student.width": width}))
    loop = plan.loop
    if plan.fuse > 1:
        loop = replace(loop, fusion=Fusion(plan.fuse, trials.group, shared_paths(study)))
    with StopSignals(plan.graceful) as signals, _trainer_processes(plan, trials):
        return run_trials(
            optuna_study,
            loop,
            trials,
            launch=trials.launch if trials.pool is not None else None,
            on_outcome=lambda o: display.outcome(o.number, o.state.name, o.reason),
            stop=lambda: signals.requested,
        )


@contextmanager
def _trainer_processes(plan: Plan, trials: TrialRuns) -> Iterator[None]:
    """With several jobs, trials train in trainer processes, each with its share of the
    CPU cores for its operations; this process keeps Optuna and MLflow."""
    jobs = plan.loop.jobs
    if jobs == 1:
        yield
        return
    threads = max(1, len(os.sched_getaffinity(0)) // jobs)
    study = plan.study
    spec = TrainerSpec(
        str(study.path), study.extra_plugins, str(plan.device), str(plan.locations.cache), threads
    )
    fork = fork_is_safe(plan.device, threads)
    pool = TrainerPool(spec, jobs, plan.trainer if fork else None)
    trials.pool = pool
    try:
        yield
    finally:
        trials.pool = None
        pool.close()
