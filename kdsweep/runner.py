"""Runs a study end to end: plugins -> config -> experiment -> search loop -> tracking.

The only module that knows all of the engine, Optuna and MLflow; each of those is used
through its own module.
"""

from __future__ import annotations

import gc
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence, Set
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from optuna.trial import TrialState

from kdsweep import engine, search, tracking
from kdsweep.cache import ModelCache
from kdsweep.config import Study
from kdsweep.display import Bar, Display, Row
from kdsweep.engine import DivergedError, EpochReport, pick_device
from kdsweep.errors import ConfigError, KdsweepError
from kdsweep.experiment import Experiment, ModelRecord
from kdsweep.fused import SHARED_TRAIN_SETTINGS
from kdsweep.redact import redact_url
from kdsweep.samplers import make_pruner, make_sampler
from kdsweep.schema import count_or_auto
from kdsweep.settings import TrialSettings
from kdsweep.signals import StopSignals
from kdsweep.stats import mean_std, welch
from kdsweep.trainers import TrainerDied, TrainerPool, TrainerSpec, fork_is_safe


@dataclass(frozen=True)
class RunOptions:
    """Command-line overrides of the study file (``None`` keeps the file's value)."""

    n_trials: int | None = None
    timeout: float | None = None
    storage: str | None = None
    tracking_uri: str | None = None
    device: str | None = None
    results: str | None = None
    workers: int = 1  # local worker processes; more than one needs a server database
    graceful: bool = False  # on the first SIGINT/SIGTERM, finish the running trial
    jobs: str | None = None  # trials trained at the same time, or "auto"
    plugins: tuple[str, ...] = ()  # local plugin modules given on the command line


@dataclass
class StudyLocations:
    """Where a study's results live: one folder holding both stores by default."""

    results: Path
    storage: str
    tracking_uri: str

    @classmethod
    def of(cls, study: Study, options: RunOptions) -> StudyLocations:
        """Command line over study file over defaults under the results folder."""
        results = Path(options.results or study.settings.results).resolve()
        return cls(
            results=results,
            storage=options.storage
            or study.settings.storage
            or f"sqlite:///{results / 'optuna.db'}",
            tracking_uri=options.tracking_uri
            or study.settings.tracking_uri
            or f"sqlite:///{results / 'mlflow.db'}",
        )


@dataclass
class TrialRecord:
    """A finished trial as the summary shows it."""

    number: int
    width: float
    params: dict[str, Any]
    val_accuracy: float
    test_accuracy: float
    n_params: int
    train_time_s: float


@dataclass
class StudySummary:
    """What a run of a study produced."""

    locations: StudyLocations | None
    teacher: ModelRecord | None
    baselines: dict[float, ModelRecord]
    best: dict[float, TrialRecord]  # best complete trial (primary objective) per width
    states: dict[str, int] = field(default_factory=dict)
    pareto: list[int] = field(default_factory=list)  # trial numbers on the Pareto front


def run_study(study: Study, options: RunOptions, display: Display | None = None) -> StudySummary:
    """Prepare everything (all errors first), then train: teacher, baselines, trials."""
    display = display or Display()
    settings = study.settings
    locations = StudyLocations.of(study, options)
    if options.workers > 1 and locations.storage.startswith("sqlite"):
        raise ConfigError(
            f"{study.path}: --workers {options.workers} needs a database server that "
            "several processes can share (--storage postgresql://...); SQLite serialises them"
        )
    sampler = make_sampler(settings, study.search, study.path)
    pruner = make_pruner(settings, study.path)
    _check_goals(study)
    device = _device(options.device or settings.device)
    experiment = Experiment(study, device, ModelCache(locations.results / "cache"))
    experiment.check_models()
    fuse = fusion_size(study, experiment)
    jobs = job_count(study, options, experiment.device)
    locations.results.mkdir(parents=True, exist_ok=True)
    n_trials = settings.n_trials if options.n_trials is None else options.n_trials
    # Workers starting together race to create the database tables: retry the loser.
    optuna_study = _retrying(
        lambda: search.open_study(settings, locations.storage, sampler),
        f"Optuna storage {redact_url(locations.storage)}",
    )
    tracker = _retrying(
        lambda: tracking.Tracker(
            locations.tracking_uri, settings.name, locations.results / "artifacts"
        ),
        f"MLflow tracking store {redact_url(locations.tracking_uri)}",
    )
    with display:
        display.stage(
            f"study [bold]{settings.name}[/] on {experiment.device}: optuna "
            f"{redact_url(locations.storage)}, mlflow {redact_url(locations.tracking_uri)}"
        )
        teachers = _teachers(tracker, display, experiment) if experiment.needs_teacher else []
        teacher = teachers[0] if teachers else None
        baselines = _Baselines(tracker, display, experiment) if settings.baseline else None
        for width in study.widths() if baselines else ():
            baselines.get(width, experiment.base.train.seed)
        display.trials(n_trials, search.finished_trials(optuna_study))
        objective = _Objective(study, experiment, tracker, display, baselines)
        status = "FINISHED"
        try:
            if options.workers > 1:
                display.stage(f"starting {options.workers} worker processes")
                _run_workers(study, options, locations)
            else:
                for width in study.widths():  # measured now, not while trials train
                    experiment.costs(study.resolve({"student.width": width}))
                fusion = (
                    search.Fusion(fuse, objective.group, shared_paths(study)) if fuse > 1 else None
                )
                with (
                    StopSignals(options.graceful) as signals,
                    _trainers(objective, study, options, locations, jobs),
                ):
                    _search(
                        study,
                        optuna_study,
                        objective,
                        display,
                        options,
                        pruner,
                        n_trials,
                        signals,
                        fusion,
                        jobs,
                    )
            if settings.repeats:
                repeats = _Repeats(study, experiment, tracker, display, baselines)
                optuna_study.set_user_attr("repeats", repeats.run(optuna_study))
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            tracker.close(status)
    summary = _summarise(
        optuna_study,
        locations,
        teacher,
        baselines.at_study_seed() if baselines else {},
        study,
    )
    display.summary(f"{settings.name}: best trial per width", _rows(summary))
    if len(settings.objectives) > 1:
        display.stage(
            f"Pareto front ({', '.join(g.metric for g in settings.objectives)}): trials "
            f"{', '.join(map(str, summary.pareto)) or 'none yet'}"
        )
    return summary


@dataclass
class _Context:
    """What the trials and the repeats of one study share."""

    study: Study
    experiment: Experiment
    tracker: tracking.Tracker
    display: Display
    baselines: _Baselines | None


@dataclass
class _OpenTrial:
    """A trial whose MLflow run is open: its settings, run and epoch callback."""

    handle: search.TrialHandle
    settings: TrialSettings
    run_id: str
    bar: Bar
    on_epoch: Callable[[EpochReport], None] = lambda report: None
    train_time_s: float = 0.0  # training and evaluation as of the last epoch


class _Objective(_Context):
    """Trials: resolve settings, open their MLflow runs, train (alone or fused), log,
    close the runs. Training happens in this process, or in trainer processes (jobs)."""

    trainer: TrainerPool | None = None

    def __call__(self, handle: search.TrialHandle) -> dict[str, float]:
        trial = self._open(handle)
        try:
            outcome: engine.FitResult | Exception = self.experiment.run_trial(
                trial.settings, trial.on_epoch
            )
        except KeyboardInterrupt:
            self._interrupted([trial])
            raise
        except Exception as exc:
            outcome = exc
        return self._close(trial, outcome)

    def group(self, handles: Sequence[search.TrialHandle]) -> list[dict[str, float] | Exception]:
        """Train the trials as fused groups of those that share an architecture (a retried
        trial may not), each trial logged as if it had run alone."""
        trials, parts = self._open_parts(handles)
        outcomes: dict[int, engine.FitResult | Exception] = {}
        try:
            for part in parts:
                outcomes.update(_numbered(part, self._fused(part)))
        except KeyboardInterrupt:
            self._interrupted(trials)
            raise
        return self._close_all(trials, outcomes)

    def launch(
        self, handles: Sequence[search.TrialHandle]
    ) -> Callable[[], list[dict[str, float] | Exception]]:
        """Open the trials' runs and send them (as fused groups when there are several) to
        this thread's trainer, which trains them after the work it already has; returns
        what waits for them and closes their runs."""
        assert self.trainer is not None
        trainer = self.trainer.current()
        trials, parts = self._open_parts(handles)
        tickets = [
            trainer.submit([t.settings for t in part], [t.on_epoch for t in part]) for part in parts
        ]

        def wait() -> list[dict[str, float] | Exception]:
            outcomes: dict[int, engine.FitResult | Exception] = {}
            try:
                for part, ticket in zip(parts, tickets, strict=True):
                    try:
                        results: list[engine.FitResult | Exception] = trainer.wait(ticket)
                    except TrainerDied as exc:
                        results = [exc] * len(part)
                    outcomes.update(_numbered(part, results))
            except KeyboardInterrupt:
                self._interrupted(trials)
                raise
            return self._close_all(trials, outcomes)

        return wait

    def _open_parts(
        self, handles: Sequence[search.TrialHandle]
    ) -> tuple[list[_OpenTrial], list[list[_OpenTrial]]]:
        """The trials' open runs, and the same trials in parts that share a fusion key."""
        keys = [fusion_key(self.study.resolve(handle.params)) for handle in handles]
        members: dict[tuple, list[int]] = {}
        for handle, key in zip(handles, keys, strict=True):
            members.setdefault(key, []).append(handle.number)
        trials = [
            self._open(
                handle,
                {tracking.FUSED_WITH: ",".join(map(str, members[key]))}
                if len(members[key]) > 1
                else {},
            )
            for handle, key in zip(handles, keys, strict=True)
        ]
        parts: dict[tuple, list[_OpenTrial]] = {}
        for trial, key in zip(trials, keys, strict=True):
            parts.setdefault(key, []).append(trial)
        return trials, list(parts.values())

    def _close_all(
        self, trials: Sequence[_OpenTrial], outcomes: Mapping[int, engine.FitResult | Exception]
    ) -> list[dict[str, float] | Exception]:
        results: list[dict[str, float] | Exception] = []
        for trial in trials:
            try:
                results.append(self._close(trial, outcomes[trial.handle.number]))
            except Exception as exc:
                results.append(exc)
        return results

    def _fused(self, part: list[_OpenTrial]) -> list[engine.FitResult | Exception]:
        if len(part) == 1:
            only = part[0]
            try:
                return [self.experiment.run_trial(only.settings, only.on_epoch)]
            except Exception as exc:
                return [exc]
        try:
            return self.experiment.run_group([t.settings for t in part], [t.on_epoch for t in part])
        except Exception as exc:  # the whole group failed (e.g. out of memory)
            return [exc] * len(part)

    def _open(
        self, handle: search.TrialHandle, extra_tags: Mapping[str, str] | None = None
    ) -> _OpenTrial:
        settings = self.study.resolve(handle.params)
        handle.trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        tags = {
            **component_tags(self.study, settings),
            **(extra_tags or {}),
            tracking.TRIAL_NUMBER: str(handle.number),
        }
        retry_of = search.retried_trial(handle.trial)
        if retry_of is not None:
            tags[tracking.RETRY_OF] = str(retry_of)
        run_id = self.tracker.start_run("trial", f"trial-{handle.number}", settings.flat(), tags)
        handle.trial.set_user_attr("mlflow_run_id", run_id)
        bar = self.display.run_started(f"trial {handle.number}", self.experiment.epochs(settings))
        trial = _OpenTrial(handle, settings, run_id, bar)
        constant = constant_values(settings)

        def on_epoch(report: EpochReport) -> None:
            trial.train_time_s = report.train_time_s
            self.tracker.log_epoch(run_id, epoch_metrics(report, constant), step=report.epoch)
            shown = " ".join(f"{k} {v:.2f}" for k, v in report.values.items())
            self.display.epoch(bar, report.epoch, report.val_accuracy, shown)
            handle.report(report.epoch, report.val_accuracy)

        trial.on_epoch = on_epoch
        return trial

    def _interrupted(self, trials: Sequence[_OpenTrial]) -> None:
        for trial in trials:
            self.display.run_ended(trial.bar)
            self.tracker.end_run(trial.run_id, "KILLED", tags=_ended("FAIL", "interrupted"))

    def _close(self, trial: _OpenTrial, outcome: engine.FitResult | Exception) -> dict[str, float]:
        """Log the outcome and end the run; an exception is re-raised as the search layer
        expects it (pruned, or failed with its reason)."""
        run_id, settings = trial.run_id, trial.settings
        self.display.run_ended(trial.bar)
        if isinstance(outcome, Exception):  # the training time it took before it ended
            trial.handle.trial.set_user_attr("train_time_s", trial.train_time_s)
        if isinstance(outcome, search.TrialPruned):
            self.tracker.end_run(run_id, "KILLED", tags=_ended("PRUNED", str(outcome)))
            raise outcome
        if isinstance(outcome, DivergedError):
            self.tracker.end_run(run_id, "KILLED", tags=_ended("PRUNED", str(outcome)))
            raise search.TrialPruned(str(outcome)) from outcome
        if isinstance(outcome, torch.cuda.OutOfMemoryError):
            gc.collect()
            torch.cuda.empty_cache()  # give the memory back before the next trial
            reason = f"CUDA out of memory: {outcome}"
            self.tracker.end_run(run_id, "FAILED", tags=_ended("FAIL", reason))
            raise RuntimeError(reason) from None
        if isinstance(outcome, Exception):
            reason = f"{type(outcome).__name__}: {outcome}"
            self.tracker.end_run(run_id, "FAILED", tags=_ended("FAIL", reason))
            raise outcome
        metrics = {
            "val_accuracy": outcome.val_accuracy,
            "test_accuracy": outcome.test_accuracy,
            "params": float(outcome.params),
            "train_time_s": outcome.train_time_s,
            **self.experiment.costs(settings),
        }
        if self.baselines is not None:
            baseline = self.baselines.get(settings.student.width, settings.train.seed)
            metrics["baseline_test_accuracy"] = baseline.test_accuracy
            metrics["kd_gain"] = outcome.test_accuracy - baseline.test_accuracy
        self.tracker.end_run(run_id, "FINISHED", metrics, tags=_ended("COMPLETE", ""))
        trial.handle.trial.set_user_attr("metrics", metrics)
        return metrics


def _numbered(
    part: Sequence[_OpenTrial], results: Sequence[engine.FitResult | Exception]
) -> Iterator[tuple[int, engine.FitResult | Exception]]:
    return zip((t.handle.number for t in part), results, strict=True)


def fusion_key(settings: TrialSettings) -> tuple:
    """What trials trained together must share: the student, the loss and the settings
    that shape the batches and the optimizer."""
    shared = tuple(getattr(settings.train, name) for name in SHARED_TRAIN_SETTINGS)
    return (settings.student, settings.loss.name, shared)


def epoch_metrics(report: EpochReport, constant: Set[str] = frozenset()) -> dict[str, float]:
    """Per-epoch series under ``epoch/...``, without the ``constant`` values (their param
    already holds them; a series per epoch would only cost store writes)."""
    return {
        "epoch/train_loss": report.train_loss,
        "epoch/val_accuracy": report.val_accuracy,
        **{f"epoch/{k}": v for k, v in report.values.items() if k not in constant},
    }


def constant_values(settings: TrialSettings) -> frozenset[str]:
    """The scheduled values that do not move: ``constant`` schedule (and, for the lr, no
    warm-up)."""
    return frozenset(
        target
        for target, choice in settings.schedules.items()
        if choice.name == "constant" and (target != "lr" or settings.train.warmup_epochs == 0)
    )


def component_tags(study: Study, settings: TrialSettings) -> dict[str, str]:
    """``kdsweep.<role>`` = component name, with ``.plugin`` and ``.version``."""
    chosen = {
        "dataset": ("dataset", settings.dataset.name),
        "teacher": ("teacher", settings.teacher.model),
        "student": ("student", settings.student.model),
        "loss": ("loss", settings.loss.name),
        **{
            f"schedule.{target}": ("schedule", choice.name)
            for target, choice in settings.schedules.items()
        },
        **{f"loss.add.{term.name}": ("loss", term.name) for term in settings.extra_losses},
        **{
            f"teacher.extra.{number}": ("teacher", choice.model)
            for number, choice in enumerate(settings.extra_teachers)
        },
    }
    tags = {}
    for role, (kind, name) in chosen.items():
        component = study.registry.get(kind, name)
        tags[f"kdsweep.{role}"] = name
        tags[f"kdsweep.{role}.plugin"] = component.origin.plugin
        tags[f"kdsweep.{role}.version"] = component.origin.version
    return tags


def _device(name: str) -> torch.device:
    try:
        device = pick_device(name)
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as exc:
        raise ConfigError(f"device '{name}' cannot be used here: {exc}") from None
    return device


def _ended(state: str, reason: str) -> dict[str, str]:
    tags = {tracking.TRIAL_STATE: state}
    if reason:
        tags[tracking.REASON] = reason
    return tags


class _Baselines:
    """No-distillation baselines by (width, seed): trained (or loaded) on first use and
    recorded once per study in MLflow."""

    def __init__(self, tracker: tracking.Tracker, display: Display, experiment: Experiment):
        self.tracker, self.display, self.experiment = tracker, display, experiment
        self.records: dict[tuple[float, int], ModelRecord] = {}
        self.lock = threading.Lock()  # trials in several threads may need the same one

    def get(self, width: float, seed: int) -> ModelRecord:
        """The baseline of the student at ``width`` trained with ``seed``."""
        with self.lock:
            return self._get(width, seed)

    def _get(self, width: float, seed: int) -> ModelRecord:
        if (width, seed) not in self.records:
            self.records[width, seed] = _reference(
                self.tracker,
                self.display,
                self.experiment,
                role="baseline",
                label=f"baseline (ce) width {width} seed {seed}",
                params={"loss.name": "ce", "student.width": width, "train.seed": seed},
                train=lambda on_epoch: self.experiment.baseline(width, on_epoch, seed),
            )
        return self.records[width, seed]

    def at_study_seed(self) -> dict[float, ModelRecord]:
        """Baselines trained with the study's seed, by width."""
        seed = self.experiment.base.train.seed
        return {width: record for (width, s), record in self.records.items() if s == seed}


class _Repeats(_Context):
    """Re-run the best trial of each width over ``repeats`` further seeds, next to the
    baseline at the same width and seeds, and compare them (Welch's t-test)."""

    def run(self, optuna_study: Any) -> list[dict[str, Any]]:
        """One row of statistics per width; kept when a rerun finds the same best trials."""
        best = _summarise(optuna_study, None, None, {}, self.study).best
        done = {(r["trial"], r["seeds"]): r for r in optuna_study.user_attrs.get("repeats", [])}
        rows = []
        for width, record in sorted(best.items()):
            key = (record.number, self.study.settings.repeats)
            rows.append(done.get(key) or self._repeat(width, record))
        return rows

    def _repeat(self, width: float, record: TrialRecord) -> dict[str, Any]:
        settings = self.study.resolve(record.params)
        seeds = [settings.train.seed + i for i in range(1, self.study.settings.repeats + 1)]
        kd, baseline = [], []
        for seed in seeds:
            seeded = replace(settings, train=replace(settings.train, seed=seed))
            label = f"repeat of trial {record.number}, seed {seed}"
            bar = self.display.run_started(label, self.experiment.epochs(seeded))
            result = self.experiment.run_trial(
                seeded, lambda r, bar=bar: self.display.epoch(bar, r.epoch, r.val_accuracy)
            )
            self.display.run_ended(bar)
            tags = {**component_tags(self.study, seeded), "kdsweep.repeat_of": str(record.number)}
            run_id = self.tracker.start_run("repeat", label, seeded.flat(), tags)
            self.tracker.end_run(
                run_id,
                "FINISHED",
                {
                    "val_accuracy": result.val_accuracy,
                    "test_accuracy": result.test_accuracy,
                },
                _ended("COMPLETE", ""),
            )
            kd.append(result.test_accuracy)
            if self.baselines is not None:
                baseline.append(self.baselines.get(width, seed).test_accuracy)
        row = {"trial": record.number, "width": width, "seeds": len(seeds)}
        row.update(
            welch(kd, baseline)
            if baseline
            else dict(zip(("kd_mean", "kd_std"), mean_std(kd), strict=True))
        )
        self.display.stage(
            f"trial {record.number} over {len(seeds)} seeds: test {row['kd_mean']:.4f} ± "
            f"{row['kd_std']:.4f}"
            + (f", gain {row['gain']:+.4f}, p = {row['p']:.3g}" if baseline else "")
        )
        return row


def _search(
    study: Study,
    optuna_study: Any,
    objective: _Objective,
    display: Display,
    options: RunOptions,
    pruner: Any,
    n_trials: int,
    signals: StopSignals,
    fusion: search.Fusion | None,
    jobs: int,
) -> None:
    search.run_trials(
        optuna_study,
        study.search,
        objective,
        n_trials,
        options.timeout or study.settings.timeout,
        on_outcome=lambda o: display.outcome(o.number, o.state.name, o.reason),
        goals=study.settings.objectives,
        constraints=study.settings.constraints,
        pruner=pruner,
        stop=lambda: signals.requested,
        fusion=fusion,
        jobs=jobs,
        launch=objective.launch if objective.trainer is not None else None,
    )


def job_count(study: Study, options: RunOptions, device: torch.device) -> int:
    """Trials trained at the same time: ``--jobs`` over ``[study] jobs``; ``auto`` is one
    per CPU core on the CPU (tiny models use one core each best) and 1 on a GPU."""
    wanted: Any = study.settings.jobs
    if options.jobs is not None:
        wanted = int(options.jobs) if options.jobs.isdigit() else options.jobs
        problem = count_or_auto(wanted)
        if problem is not None:
            raise ConfigError(f"--jobs {options.jobs}: {problem}")
    if wanted != "auto":
        return int(wanted)
    return len(os.sched_getaffinity(0)) if device.type == "cpu" else 1


@contextmanager
def _trainers(
    objective: _Objective,
    study: Study,
    options: RunOptions,
    locations: StudyLocations,
    jobs: int,
) -> Iterator[None]:
    """With several jobs, trials train in trainer processes, each with its share of the
    CPU cores for its operations; this process keeps Optuna and MLflow."""
    if jobs == 1:
        yield
        return
    device = objective.experiment.device
    threads = max(1, len(os.sched_getaffinity(0)) // jobs)
    spec = TrainerSpec(
        str(study.path), options.plugins, str(device), str(locations.results / "cache"), threads
    )
    fork = fork_is_safe(device, threads)
    pool = TrainerPool(spec, jobs, objective.experiment if fork else None)
    objective.trainer = pool
    try:
        yield
    finally:
        objective.trainer = None
        pool.close()


# Group size of fuse = "auto" by device type: on a GPU a fused group fills the device that
# one small student leaves idle; on the CPU batched kernels were measured no faster than
# separate ones (docs/performance.md), so there "auto" trains trials alone.
AUTO_FUSE = {"cuda": 8, "cpu": 1}


def fusion_size(study: Study, experiment: Experiment) -> int:
    """How many trials train together: ``[study] fuse`` checked against what the study
    does (``auto`` falls back to 1 where fusing cannot apply; a number gives an error)."""
    wanted = study.settings.fuse
    if wanted == 1:
        return 1
    reason = None
    if not experiment.can_fuse():
        reason = (
            "fused trials need response-based losses (no layers read, no loss modules, "
            "no mutual learning or generations)"
        )
    elif study.settings.sampler == "grid":
        reason = "the grid sampler fixes every param of each trial, so it cannot fill a group"
    if reason is None:
        return AUTO_FUSE.get(experiment.device.type, 1) if wanted == "auto" else int(wanted)
    if wanted == "auto":
        return 1
    raise ConfigError(f"{study.path}: [study] fuse = {wanted}: {reason}")


def shared_paths(study: Study) -> tuple[str, ...]:
    """Searched paths every member of a fused group shares with the group's first trial."""
    shared = {"loss.name", *(f"train.{name}" for name in SHARED_TRAIN_SETTINGS)}
    return tuple(
        dim.path for dim in study.search if dim.path in shared or dim.path.startswith("student.")
    )


def _run_workers(study: Study, options: RunOptions, locations: StudyLocations) -> None:
    """``kdsweep worker`` processes on this machine, one GPU each when there are several."""
    command = [
        sys.executable,
        "-m",
        "kdsweep",
        "worker",
        str(study.path),
        "--storage",
        locations.storage,
        "--tracking-uri",
        locations.tracking_uri,
        "--results",
        str(locations.results),
    ]
    for flag, value in (
        ("--n-trials", options.n_trials),
        ("--timeout", options.timeout),
        ("--device", options.device),
    ):
        if value is not None:
            command += [flag, str(value)]
    if options.graceful:
        command.append("--graceful")
    for plugin in options.plugins:
        command += ["--plugin", plugin]
    gpus = torch.cuda.device_count()
    processes = []
    for number in range(options.workers):
        env = dict(os.environ)
        if gpus > 1:
            env["CUDA_VISIBLE_DEVICES"] = str(number % gpus)
        processes.append(subprocess.Popen(command, env=env))
    try:
        codes = [process.wait() for process in processes]
    except KeyboardInterrupt:
        for process in processes:
            process.send_signal(signal.SIGINT)
        for process in processes:
            process.wait()
        raise
    if any(codes):
        raise KdsweepError(f"worker exit codes: {codes}")


def _retrying(create: Callable[[], Any], what: str, attempts: int = 4) -> Any:
    """``create()``, tried again after a short random pause when it fails; then an error
    naming ``what`` (with any password hidden)."""
    for attempt in range(attempts):
        try:
            return create()
        except KdsweepError:
            raise
        except Exception as exc:
            if attempt == attempts - 1:
                cause = redact_url(str(exc).strip().splitlines()[0] if str(exc).strip() else "")
                raise KdsweepError(
                    f"cannot open the {what}: {type(exc).__name__}: {cause}"
                ) from None
            time.sleep(0.5 + random.random() * (attempt + 1))
    raise AssertionError("unreachable")


def _check_goals(study: Study) -> None:
    """Objectives and constraints that need something the study does not record."""
    metrics = [g.metric for g in study.settings.objectives]
    metrics += [c.metric for c in study.settings.constraints]
    if "kd_gain" in metrics and not study.settings.baseline:
        raise ConfigError(
            f"{study.path}: [study] objectives/constraints use kd_gain, which needs baseline = true"
        )


def _teachers(
    tracker: tracking.Tracker, display: Display, experiment: Experiment
) -> list[ModelRecord]:
    """Train (or load) every teacher; the first one's metrics also go on the study's run."""
    records = []
    for number, choice in enumerate(experiment.base.teachers):
        records.append(
            _reference(
                tracker,
                display,
                experiment,
                role="teacher",
                label="teacher" if number == 0 else f"teacher {number}: {choice}",
                params={"teacher.model": choice.model, "teacher.width": choice.width},
                train=lambda on_epoch, number=number: experiment.teacher(number, on_epoch),
            )
        )
    first = records[0]
    tracker.log(
        tracker.parent_id,
        {f"teacher_{k}": v for k, v in first.metrics().items()},
        {"kdsweep.teacher": first.model, "kdsweep.teacher.width": str(first.width)},
    )
    return records


def _reference(
    tracker: tracking.Tracker,
    display: Display,
    experiment: Experiment,
    role: str,
    label: str,
    params: Mapping[str, Any],
    train: Callable[[Callable[[EpochReport], None]], ModelRecord],
) -> ModelRecord:
    """Train (or load) a teacher or a baseline, and record it once per study in MLflow."""
    bar = display.run_started(label, None)
    record = train(lambda report: display.epoch(bar, report.epoch, report.val_accuracy))
    display.run_ended(bar)
    display.stage(
        f"{label}: val {record.val_accuracy:.4f} test {record.test_accuracy:.4f} "
        f"params {record.params:,}" + (" (cached)" if record.cached else "")
    )
    if not tracker.find_runs(role=role, **{tracking.KEY: record.key}):
        tags = {**component_tags(experiment.study, experiment.base), tracking.KEY: record.key}
        run_id = tracker.start_run(role, label, {**experiment.base.flat(), **params}, tags)
        tracker.end_run(run_id, "FINISHED", record.metrics(), _ended("COMPLETE", ""))
    return record


def _summarise(
    optuna_study: Any,
    locations: StudyLocations | None,
    teacher: ModelRecord | None,
    baselines: dict[float, ModelRecord],
    study: Study,
) -> StudySummary:
    trials = optuna_study.get_trials(deepcopy=False)
    states: dict[str, int] = {}
    for trial in trials:
        states[trial.state.name] = states.get(trial.state.name, 0) + 1
    primary = study.settings.objectives[0]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    complete.sort(key=lambda t: t.values[0], reverse=primary.direction == "maximize")
    best: dict[float, TrialRecord] = {}
    for t in complete:
        width = t.params.get("student.width", study.tree["student"]["width"])
        if width not in best:
            metrics = t.user_attrs.get("metrics", {})
            best[width] = TrialRecord(
                number=t.number,
                width=width,
                params=dict(t.params),
                val_accuracy=metrics.get("val_accuracy", float("nan")),
                test_accuracy=metrics.get("test_accuracy", float("nan")),
                n_params=int(metrics.get("params", 0)),
                train_time_s=metrics.get("train_time_s", float("nan")),
            )
    pareto = sorted(t.number for t in optuna_study.best_trials) if complete else []
    return StudySummary(locations, teacher, baselines, best, states, pareto)


def _rows(summary: StudySummary) -> list[Row]:
    """Teacher, then per width: the no-distillation baseline and the best trial."""
    rows = []
    if summary.teacher is not None:
        t = summary.teacher
        rows.append(
            Row(
                "teacher",
                t.width,
                t.model,
                t.val_accuracy,
                t.test_accuracy,
                t.params,
                t.train_time_s,
            )
        )
    for width in sorted({*summary.baselines, *summary.best}):
        baseline = summary.baselines.get(width)
        if baseline is not None:
            rows.append(
                Row(
                    "baseline (ce)",
                    width,
                    baseline.model,
                    baseline.val_accuracy,
                    baseline.test_accuracy,
                    baseline.params,
                    baseline.train_time_s,
                )
            )
        trial = summary.best.get(width)
        if trial is not None:
            params = {k: v for k, v in trial.params.items() if k != "student.width"}
            names = short_names(list(params))
            shown = ", ".join(f"{names[k]}={_short(v)}" for k, v in params.items())
            gain = None if baseline is None else trial.test_accuracy - baseline.test_accuracy
            rows.append(
                Row(
                    f"best: trial {trial.number}",
                    width,
                    shown,
                    trial.val_accuracy,
                    trial.test_accuracy,
                    trial.n_params,
                    trial.train_time_s,
                    gain,
                )
            )
    return rows


def short_names(paths: list[str]) -> dict[str, str]:
    """The shortest dotted suffix of each path that no other path ends with."""
    names = {}
    for path in paths:
        parts = path.split(".")
        for size in range(1, len(parts) + 1):
            suffix = ".".join(parts[-size:])
            taken = any(
                other.endswith("." + suffix) or other == suffix for other in paths if other != path
            )
            if not taken and suffix != "name":  # "name" alone says too little
                break
        names[path] = suffix
    return names


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
