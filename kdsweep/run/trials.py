"""A trial's life between the search and the trainer: resolve its settings, open its
MLflow run, train it (alone, fused, in this process or a trainer process), log its
epochs and metrics, end its run with the state the search will tell Optuna."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch

from kdsweep.faults import fault_point
from kdsweep.run.display import Bar, Display
from kdsweep.run.keep import StudentKeeper
from kdsweep.run.processes import TrainerDied, TrainerPool
from kdsweep.run.records import (
    component_tags,
    constant_values,
    epoch_metrics,
    run_name,
    shown_metrics,
)
from kdsweep.run.references import Baselines
from kdsweep.search import storage
from kdsweep.search.keep import Scored
from kdsweep.search.trial import InterruptedAfter, TrialHandle, TrialPruned
from kdsweep.study.settings import TrialSettings
from kdsweep.study.study import Study
from kdsweep.track import tags
from kdsweep.track.models import StudentModel
from kdsweep.track.tracker import Tracker
from kdsweep.train.fit import DivergedError, EpochReport, FitResult
from kdsweep.train.fused import SHARED_TRAIN_SETTINGS
from kdsweep.train.trainer import StudyTrainer

Result = FitResult | Exception
COMPONENTS_ATTR = "components"  # the Optuna trial's components: name, plugin, version
Metrics = dict[str, float]
T = TypeVar("T")


@dataclass
class _OpenTrial:
    """A trial whose MLflow run is open: its settings, run and epoch callback."""

    handle: TrialHandle
    settings: TrialSettings
    run_id: str
    bar: Bar
    on_epoch: Callable[[EpochReport], None] = lambda report: None
    train_time_s: float = 0.0  # training and evaluation as of the last epoch
    last: EpochReport | None = None  # the last epoch reported

    def last_epoch_metrics(self) -> Metrics:
        """What a trial stopped early shows as its final metrics: its last epoch's."""
        if self.last is None:
            return {}
        return {
            "val_accuracy": self.last.val_accuracy,
            "train_loss": self.last.train_loss,
            "train_time_s": self.train_time_s,
            "pruned_at_epoch": float(self.last.epoch),
        }


def fusion_key(settings: TrialSettings) -> tuple:
    """What trials trained together must share: the student, the loss and the settings
    that shape the batches and the optimizer."""
    shared = tuple(getattr(settings.train, name) for name in SHARED_TRAIN_SETTINGS)
    return (settings.student, settings.loss.name, shared)


class TrialRuns:
    """Trials from handle to metrics; training happens in this process, or in the trainer
    processes of ``pool`` (``jobs`` > 1)."""

    def __init__(
        self,
        trainer: StudyTrainer,
        tracker: Tracker,
        display: Display,
        baselines: Baselines | None,
        keeper: StudentKeeper | None = None,
    ) -> None:
        self.study: Study = trainer.study
        self.trainer = trainer
        self.tracker = tracker
        self.display = display
        self.baselines = baselines
        self.keeper = keeper
        self.pool: TrainerPool | None = None

    def __call__(self, handle: TrialHandle) -> Metrics:
        """Train one trial in this process."""
        trial = self._open(handle)
        try:
            outcome: Result = self.trainer.run_trial(trial.settings, trial.on_epoch)
        except KeyboardInterrupt:
            self._interrupted([trial])
            raise
        except Exception as exc:
            outcome = exc
        return self._close(trial, outcome)

    def group(self, handles: Sequence[TrialHandle]) -> list[Metrics | Exception]:
        """Train the trials as fused groups of those that share an architecture (a retried
        trial may not), each trial logged as if it had run alone, each group as it ends."""
        parts = [self._open_part(part) for part in self._parts(handles)]
        trials = _in_order(handles, parts)
        return self._close_parts(parts, trials, lambda index, part: self._fused(part))

    def launch(self, handles: Sequence[TrialHandle]) -> Callable[[], list[Metrics | Exception]]:
        """Send the trials (as fused groups when there are several) to this thread's
        trainer process, which trains them after the work it already has, and open their
        runs meanwhile; returns what waits for them and closes their runs."""
        assert self.pool is not None
        trainer = self.pool.current()
        opened: dict[int, _OpenTrial] = {}  # the callbacks run in wait(), once all are open

        def relay(number: int) -> Callable[[EpochReport], None]:
            return lambda report: opened[number].on_epoch(report)

        waiting = self._parts(handles)
        tickets = [
            trainer.submit(
                [self.study.resolve(h.params) for h in part], [relay(h.number) for h in part]
            )
            for part in waiting
        ]
        parts = [self._open_part(part) for part in waiting]
        trials = _in_order(handles, parts)
        opened.update((trial.handle.number, trial) for trial in trials)

        def results(index: int, part: list[_OpenTrial]) -> list[Result]:
            try:
                return trainer.wait(tickets[index])
            except TrainerDied as exc:
                return [exc] * len(part)

        return lambda: self._close_parts(parts, trials, results)

    def _close_parts(
        self,
        parts: Sequence[list[_OpenTrial]],
        trials: Sequence[_OpenTrial],
        results: Callable[[int, list[_OpenTrial]], list[Result]],
    ) -> list[Metrics | Exception]:
        """Each part's ``results(index, part)`` (it trains here, or waits for the trainer
        process), closed (logged) at once: with a trainer process, while it trains the
        next part. Per trial of ``trials``, its metrics or exception. On Ctrl-C the parts
        closed so far go to the search with the interrupt (their students are kept)."""
        closed: dict[int, Metrics | Exception] = {}
        try:
            for index, part in enumerate(parts):
                ended = self._close_all(part, dict(_numbered(part, results(index, part))))
                closed.update(_numbered(part, ended))
        except KeyboardInterrupt as exc:
            self._interrupted([t for t in trials if t.handle.number not in closed])
            raise InterruptedAfter(closed) from exc
        return [closed[t.handle.number] for t in trials]

    def _parts(self, handles: Sequence[TrialHandle]) -> list[list[TrialHandle]]:
        """The trials in parts that share a fusion key."""
        parts: dict[tuple, list[TrialHandle]] = {}
        for handle in handles:
            parts.setdefault(fusion_key(self.study.resolve(handle.params)), []).append(handle)
        return list(parts.values())

    def _open_part(self, part: Sequence[TrialHandle]) -> list[_OpenTrial]:
        """The runs of a part's trials, opened (tagged with the part's other trials)."""
        numbers = ",".join(str(handle.number) for handle in part)
        fused = {tags.FUSED_WITH: numbers} if len(part) > 1 else {}
        return [self._open(handle, fused) for handle in part]

    def _close_all(
        self, trials: Sequence[_OpenTrial], outcomes: Mapping[int, Result]
    ) -> list[Metrics | Exception]:
        """Close trials that ended together; their students are weighed together."""
        rivals = self._rivals(trials, outcomes)
        results: list[Metrics | Exception] = []
        for trial in trials:
            try:
                results.append(self._close(trial, outcomes[trial.handle.number], rivals))
            except Exception as exc:
                results.append(exc)
        return results

    def _rivals(
        self, trials: Sequence[_OpenTrial], outcomes: Mapping[int, Result]
    ) -> list[Scored] | None:
        """What the students of trials closing together are weighed against (``None``:
        nothing is kept, or a single trial weighs itself on closing)."""
        completed = [t for t in trials if isinstance(outcomes[t.handle.number], FitResult)]
        if self.keeper is None or len(completed) < 2:
            return None
        closing = [
            self.keeper.scored(
                t.handle.number, t.settings, self._metrics(t.settings, outcomes[t.handle.number])
            )
            for t in completed
        ]
        return self.keeper.rivals(completed[0].handle.trial.study, closing)

    def _fused(self, part: list[_OpenTrial]) -> list[Result]:
        if len(part) == 1:
            only = part[0]
            try:
                return [self.trainer.run_trial(only.settings, only.on_epoch)]
            except Exception as exc:
                return [exc]
        try:
            return self.trainer.run_group([t.settings for t in part], [t.on_epoch for t in part])
        except Exception as exc:  # the whole group failed (e.g. out of memory)
            return [exc] * len(part)

    def _open(self, handle: TrialHandle, extra_tags: Mapping[str, str] | None = None) -> _OpenTrial:
        settings = self.study.resolve(handle.params)
        components = component_tags(self.study, settings)
        handle.trial.set_user_attr(COMPONENTS_ATTR, components)
        run_tags = {
            **components,
            **(extra_tags or {}),
            tags.TRIAL_NUMBER: str(handle.number),
        }
        retry_of = storage.retried_trial(handle.trial)
        if retry_of is not None:
            run_tags[tags.RETRY_OF] = str(retry_of)
        name = run_name(handle.number, handle.params)
        run_id = self.tracker.start_run("trial", name, settings.flat(), run_tags)
        handle.trial.set_user_attr("mlflow_run_id", run_id)
        bar = self.display.run_started(f"trial {handle.number}", self.trainer.epochs(settings))
        trial = _OpenTrial(handle, settings, run_id, bar)
        constant = constant_values(settings)

        def on_epoch(report: EpochReport) -> None:
            fault_point("trial_epoch")
            trial.train_time_s, trial.last = report.train_time_s, report
            self.tracker.log_epoch(run_id, epoch_metrics(report, constant), step=report.epoch)
            shown = " ".join(f"{k} {v:.2f}" for k, v in report.values.items())
            self.display.epoch(bar, report.epoch, report.val_accuracy, shown)
            handle.report(report.epoch, report.val_accuracy)

        trial.on_epoch = on_epoch
        return trial

    def _interrupted(self, trials: Sequence[_OpenTrial]) -> None:
        for trial in trials:
            self.display.run_ended(trial.bar)
            self.tracker.end_run(trial.run_id, "KILLED", tags=tags.ended("FAIL", "interrupted"))

    def _close(
        self, trial: _OpenTrial, outcome: Result, rivals: Sequence[Scored] | None = None
    ) -> Metrics:
        """Log the outcome and end the run (its student weighed against ``rivals``, see
        :meth:`StudentKeeper.keep`); an exception is re-raised as the search layer expects
        it (pruned, or failed with its reason)."""
        run_id, settings = trial.run_id, trial.settings
        self.display.run_ended(trial.bar)
        trial.handle.save()  # now, while the next trials train, not when all have ended
        if isinstance(outcome, Exception):  # the training time it took before it ended
            trial.handle.trial.set_user_attr("train_time_s", trial.train_time_s)
        if isinstance(outcome, TrialPruned | DivergedError):
            stopped = shown_metrics(trial.last_epoch_metrics())
            ended = tags.ended("PRUNED", str(outcome))
            self.tracker.end_run(run_id, "KILLED", stopped, ended)
            if isinstance(outcome, TrialPruned):
                raise outcome
            raise TrialPruned(str(outcome)) from outcome
        if isinstance(outcome, torch.cuda.OutOfMemoryError):
            gc.collect()
            torch.cuda.empty_cache()  # give the memory back before the next trial
            reason = f"CUDA out of memory: {outcome}"
            self.tracker.end_run(run_id, "FAILED", tags=tags.ended("FAIL", reason))
            raise RuntimeError(reason) from None
        if isinstance(outcome, Exception):
            reason = f"{type(outcome).__name__}: {outcome}"
            self.tracker.end_run(run_id, "FAILED", tags=tags.ended("FAIL", reason))
            raise outcome
        metrics = self._metrics(settings, outcome)
        student = self._keep(trial, outcome, metrics, rivals)
        fault_point("before_run_end")  # trained, neither store told yet
        end_tags = tags.ended("COMPLETE")
        if student is not None:
            end_tags[tags.MODEL_ID] = student.model_id
        model_id = student.model_id if student else None
        self.tracker.end_run(
            run_id, "FINISHED", shown_metrics(metrics), end_tags, model_id=model_id
        )
        trial.handle.trial.set_user_attr("metrics", metrics)
        return metrics

    def _keep(
        self,
        trial: _OpenTrial,
        outcome: FitResult,
        metrics: Metrics,
        rivals: Sequence[Scored] | None,
    ) -> StudentModel | None:
        """The trial's student logged, if the study keeps it; a student that cannot be
        stored fails its trial (the study promised to keep it)."""
        if self.keeper is None:
            return None
        try:
            return self.keeper.keep(
                trial.handle.trial, trial.settings, outcome, metrics, trial.run_id, rivals
            )
        except Exception as exc:
            reason = f"could not keep the student: {type(exc).__name__}: {exc}"
            self.tracker.end_run(trial.run_id, "FAILED", tags=tags.ended("FAIL", reason))
            raise RuntimeError(reason) from exc

    def _metrics(self, settings: TrialSettings, outcome: FitResult) -> Metrics:
        metrics = {
            "val_accuracy": outcome.val_accuracy,
            "test_accuracy": outcome.test_accuracy,
            "params": float(outcome.params),
            "train_time_s": outcome.train_time_s,
            **self.trainer.costs(settings),
        }
        if self.baselines is not None:
            baseline = self.baselines.get(settings.student.width, settings.train.seed)
            metrics["baseline_test_accuracy"] = baseline.test_accuracy
            metrics["kd_gain"] = outcome.test_accuracy - baseline.test_accuracy
        return metrics


def _in_order(
    handles: Sequence[TrialHandle], parts: Sequence[Sequence[_OpenTrial]]
) -> list[_OpenTrial]:
    """The parts' trials in the order of ``handles``."""
    by_number = {trial.handle.number: trial for part in parts for trial in part}
    return [by_number[handle.number] for handle in handles]


def _numbered(part: Sequence[_OpenTrial], results: Sequence[T]) -> Iterator[tuple[int, T]]:
    """Each trial's number with its result (in the part's order)."""
    return zip((t.handle.number for t in part), results, strict=True)
