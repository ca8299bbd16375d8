"""Trains the trials of one study in one process, sharing what they have in common: the
data on the device, the teachers and their logits, the baselines and the cost metrics.

Turns resolved settings into fit calls; knows nothing of Optuna or MLflow. How a trial
trains depends on its main loss's :class:`~kdsweep.plugin.registry.Training` mode, and
that is decided here alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import torch
from torch import nn

from kdsweep.errors import KdsweepError, PluginError
from kdsweep.plugin.registry import Training
from kdsweep.plugin.types import DataSplits
from kdsweep.study.settings import TrialSettings
from kdsweep.study.study import Study
from kdsweep.train import fused, loss_terms
from kdsweep.train.cache import ModelCache
from kdsweep.train.checks import needs_teacher
from kdsweep.train.costs import cost_metrics, latency_ms
from kdsweep.train.fit import (
    EpochCallback,
    FitResult,
    Recipe,
    Teachers,
    TrainingLoss,
    count_params,
    cpu_weights,
    fit,
    predict_logits,
)
from kdsweep.train.loss_terms import LABEL_LOSS, Term, bound_schedule
from kdsweep.train.models import ModelFactory, teacher_where
from kdsweep.train.references import ModelRecord, References

Poll = Callable[[], None]


class StudyTrainer:
    """Prepared state for training the trials of one study on one device."""

    def __init__(self, study: Study, device: torch.device, cache: ModelCache) -> None:
        self.study = study
        self.registry = study.registry
        self.device = device
        self.base = study.resolve()
        self.data = _load_data(study, self.base).to(device)
        self.models = ModelFactory(study.path, self.registry, self.data, device)
        self.references = References(self.base, self.registry, self.models, cache)
        self.keeps_weights = study.settings.keep != "none"  # results carry the students' weights
        self._teacher_logits: tuple[torch.Tensor, ...] = ()
        self._costs: dict[tuple[str, float], dict[str, float]] = {}
        self._latency: dict[tuple[str, float], float] = {}

    def teacher(self, number: int = 0, on_epoch: EpochCallback | None = None) -> ModelRecord:
        """Teacher ``number``'s record, trained (or loaded) on first use."""
        return self.references.teacher(number, on_epoch)

    def baseline(
        self, width: float, on_epoch: EpochCallback | None = None, seed: int | None = None
    ) -> ModelRecord:
        """The no-distillation baseline at ``width`` (see :meth:`References.baseline`)."""
        return self.references.baseline(width, on_epoch, seed)

    def use_data(self, data: DataSplits) -> None:
        """Train later trials on ``data`` (e.g. training + validation data, to retrain a
        winner); the teachers loaded so far stay as they are."""
        self.data = self.models.data = data.to(self.device)
        self._teacher_logits = ()
        self._costs = {}

    def teacher_signal(self, settings: TrialSettings) -> Teachers:
        """Every teacher, with its training-set logits computed once unless the trial
        augments its batches (then the teachers run on each augmented batch)."""
        for number in range(len(self.base.teachers)):
            self.teacher(number)
        models = tuple(model for model, _ in self.references.teachers.values())
        if settings.train.augment != "none":
            return Teachers(models=models)
        if not self._teacher_logits:
            self._teacher_logits = tuple(
                predict_logits(model, self.data.train_x) for model in models
            )
        return Teachers(models=models, logits=self._teacher_logits)

    def costs(self, settings: TrialSettings) -> dict[str, float]:
        """FLOPs, latency, size and compression of the trial's student architecture."""
        key = (settings.student.model, settings.student.width)
        if key not in self._costs:
            student = self.models.build("student", settings.student, "[student]")
            batch = self.data.train_x[: settings.train.batch_size]
            self._costs[key] = {
                **cost_metrics(student, batch, self._teacher_params()),
                "latency_ms": self.latency(settings),
            }
        return self._costs[key]

    def latency(self, settings: TrialSettings) -> float:
        """The student architecture's latency (ms per batch), measured on first use: a run
        asks for it before anything trains, so that nothing else competes for the cores."""
        key = (settings.student.model, settings.student.width)
        if key not in self._latency:
            student = self.models.build("student", settings.student, "[student]")
            self._latency[key] = latency_ms(student, self.data.train_x[: settings.train.batch_size])
        return self._latency[key]

    def _teacher_params(self) -> int | None:
        """The first teacher's parameter count (built, not trained, when it is not loaded
        yet: costs are measured before the teacher trains)."""
        if not needs_teacher(self.study):
            return None
        loaded = self.references.teachers.get(0)
        if loaded is not None:
            return loaded[1].params
        choice = self.base.teachers[0]
        return count_params(self.models.build("teacher", choice, teacher_where(0)))

    def epochs(self, settings: TrialSettings) -> int:
        """Epochs a trial runs, all generations together."""
        if self._mode(settings) is Training.GENERATIONS:
            return settings.train.epochs * (settings.loss.params["generations"] + 1)
        return settings.train.epochs

    def run_trial(
        self,
        settings: TrialSettings,
        on_epoch: EpochCallback | None = None,
        poll: Poll | None = None,
    ) -> FitResult:
        """Train the trial's student(s) with its losses; teacher outputs are shared.
        ``on_epoch`` and ``poll`` are :func:`~kdsweep.train.fit.fit`'s."""
        terms = loss_terms.loss_terms(self.registry, settings)
        if self._mode(settings) is Training.GENERATIONS:
            return self._generations(settings, terms, on_epoch, poll)
        count = settings.loss.params["peers"] if self._mode(settings) is Training.MUTUAL else 1
        students = [
            self.models.build(
                "student", settings.student, "[student]", seed=settings.train.seed + k
            )
            for k in range(count)
        ]
        teachers = None
        if any(component.needs_teacher for component, _ in terms):
            teachers = self.teacher_signal(settings)
        loss = self._training_loss(settings, terms, students[0], teachers and teachers.models[0])
        result = fit(
            students,
            self.data,
            self._recipe(settings, loss),
            teachers=teachers,
            on_epoch=on_epoch,
            poll=poll,
        )
        return self._with_weights(result, students[0])

    def run_group(
        self, group: Sequence[TrialSettings], on_epochs: Sequence[EpochCallback | None]
    ) -> list[FitResult | Exception]:
        """Train trials that share the student's architecture together (fused); each
        result is the trial's metrics or the exception that ended it."""
        students = [
            self.models.build("student", s.student, "[student]", seed=s.train.seed) for s in group
        ]
        terms = [loss_terms.loss_terms(self.registry, s) for s in group]
        teachers = None
        if any(component.needs_teacher for t in terms for component, _ in t):
            teachers = self.teacher_signal(group[0])
        recipes = [
            self._recipe(s, self._training_loss(s, t, student, None))
            for s, t, student in zip(group, terms, students, strict=True)
        ]
        results = fused.fit_group(
            students, self.data, recipes, teachers=teachers, on_epochs=on_epochs
        )
        return [
            self._with_weights(result, student) if isinstance(result, FitResult) else result
            for result, student in zip(results, students, strict=True)
        ]

    def _with_weights(self, result: FitResult, student: nn.Module) -> FitResult:
        """The result with the student's weights, when the study keeps students."""
        return replace(result, weights=cpu_weights(student)) if self.keeps_weights else result

    def _mode(self, settings: TrialSettings) -> Training:
        return self.registry.get("loss", settings.loss.name).training

    def _generations(
        self,
        settings: TrialSettings,
        terms: list[Term],
        on_epoch: EpochCallback | None,
        poll: Poll | None,
    ) -> FitResult:
        """Born-again networks: generation 0 learns from labels, each next one from the last."""
        epochs = settings.train.epochs
        seed = settings.train.seed
        previous = self.models.build("student", settings.student, "[student]", seed=seed)
        result = fit(
            previous,
            self.data,
            self._recipe(settings, LABEL_LOSS),
            on_epoch=on_epoch,
            poll=poll,
        )
        train_time = result.train_time_s
        for generation in range(1, settings.loss.params["generations"] + 1):
            previous.eval()
            teachers = Teachers(
                models=(previous,),
                logits=()
                if settings.train.augment != "none"
                else (predict_logits(previous, self.data.train_x),),
            )
            student = self.models.build(
                "student", settings.student, "[student]", seed=seed + generation
            )
            result = fit(
                student,
                self.data,
                self._recipe(settings, self._training_loss(settings, terms, student, previous)),
                teachers=teachers,
                on_epoch=_shifted(on_epoch, generation * epochs),
                poll=poll,
            )
            train_time += result.train_time_s
            previous = student
        return self._with_weights(replace(result, train_time_s=train_time), previous)

    def _recipe(self, settings: TrialSettings, loss: TrainingLoss) -> Recipe:
        return Recipe(settings.train, loss, bound_schedule(self.registry, settings, "lr"))

    def _training_loss(
        self,
        settings: TrialSettings,
        terms: list[Term],
        student: nn.Module,
        teacher: nn.Module | None,
    ) -> TrainingLoss:
        shapes = loss_terms.feature_shapes(student, teacher, terms, self.data.train_x[:2])
        return loss_terms.build_training_loss(
            terms, shapes, self.device, loss_terms.term_schedules(self.registry, settings, terms)
        )


def _load_data(study: Study, base: TrialSettings) -> DataSplits:
    dataset = study.registry.get("dataset", base.dataset.name)
    try:
        data = dataset.load()(**base.dataset.params)
    except KdsweepError:
        raise
    except Exception as exc:
        raise PluginError(
            f"dataset '{dataset.name}' ({dataset.origin}) failed to load: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(data, DataSplits):
        raise PluginError(f"dataset '{dataset.name}' ({dataset.origin}) did not return DataSplits")
    return data


def _shifted(on_epoch: EpochCallback | None, offset: int) -> EpochCallback | None:
    """The callback, seeing epochs numbered from ``offset`` (later generations)."""
    if on_epoch is None:
        return None
    return lambda report: on_epoch(replace(report, epoch=report.epoch + offset))
