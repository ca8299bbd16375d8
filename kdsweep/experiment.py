"""What every trial of a study shares in one process: data on the device, the teacher,
its logits on the training set, and the no-distillation baselines.

Turns resolved settings into engine calls; knows nothing of Optuna or MLflow.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace

import torch
from torch import nn

from kdsweep import engine, fused, objective
from kdsweep.cache import ModelCache, content_key, data_fingerprint, file_digest
from kdsweep.components import DataSplits
from kdsweep.config import Study
from kdsweep.costs import cost_metrics
from kdsweep.errors import ConfigError, KdsweepError, PluginError
from kdsweep.settings import ModelChoice, TrainSettings, TrialSettings


@dataclass(frozen=True)
class ModelRecord:
    """Outcome of a reference run (teacher or baseline), fresh or from the cache."""

    key: str
    model: str
    width: float
    val_accuracy: float
    test_accuracy: float
    params: int
    train_time_s: float
    cached: bool

    def metrics(self) -> dict[str, float]:
        """The record's metrics under the names trials use."""
        return {
            "val_accuracy": self.val_accuracy,
            "test_accuracy": self.test_accuracy,
            "params": float(self.params),
            "train_time_s": self.train_time_s,
        }


class Experiment:
    """Prepared state for running the trials of one study on one device."""

    def __init__(self, study: Study, device: torch.device, cache: ModelCache) -> None:
        self.study = study
        self.registry = study.registry
        self.device = device
        self.cache = cache
        self.base = study.resolve()
        self.data = self._load_data().to(device)
        self.fingerprint = data_fingerprint(self.data)
        # teacher number -> (model in eval mode, record); logits on the training set, once
        self._teachers: dict[int, tuple[nn.Module, ModelRecord]] = {}
        self._teacher_logits: tuple[torch.Tensor, ...] = ()
        self._baselines: dict[tuple[float, int], ModelRecord] = {}
        self._costs: dict[tuple[str, float], dict[str, float]] = {}

    def check_models(self) -> None:
        """Build every model once and check the loss layers: errors before any training."""
        for number, choice in enumerate(self.base.teachers):
            model = self._build("teacher", choice, self._teacher_where(number))
            if choice.weights:
                self._load_weights(model, choice.weights, number)
        for model, width in self._reachable_students():
            self._build("student", ModelChoice(model, width), "[student] width / [search] width")
        for settings in self._reachable_losses():
            terms = objective.loss_terms(self.registry, settings)
            main = terms[0][0]
            student = self._build("student", settings.student, "[student]")
            teacher = self._build("teacher", settings.teacher, "[teacher] width")
            if main.training == "generations":
                teacher = student  # each generation learns from the one before
            elif not main.needs_teacher:
                teacher = None
            objective.check_layers(self.study.path, terms, {"student": student, "teacher": teacher})
            if main.training == "mutual" and objective.captured_layers(terms, "student"):
                raise ConfigError(
                    f"{self.study.path}: [loss] name = '{main.name}': mutual learning trains "
                    "several students and cannot be combined with losses that read layers"
                )

    @property
    def needs_teacher(self) -> bool:
        """Whether any loss the study may use needs a pre-trained teacher."""
        return any(
            component.needs_teacher
            for settings in self._reachable_losses()
            for component, _ in objective.loss_terms(self.registry, settings)
        )

    def teacher(self, number: int = 0, on_epoch: engine.EpochCallback | None = None) -> ModelRecord:
        """Teacher ``number``'s record; trains it (and caches it) unless the cache has it."""
        if number not in self._teachers:
            choice = self.base.teachers[number]
            if choice.weights:
                model, record = self._pretrained(number, choice)
            else:
                model, record = self._trained(
                    "teachers", "teacher", choice, self.base.teacher_train, on_epoch
                )
            self._teachers[number] = (model.eval(), record)
        return self._teachers[number][1]

    def teacher_signal(self, settings: TrialSettings) -> engine.Teachers:
        """Every teacher, with its training-set logits computed once unless the trial
        augments its batches (then the teachers run on each augmented batch)."""
        for number in range(len(self.base.teachers)):
            self.teacher(number)
        models = tuple(model for model, _ in self._teachers.values())
        if settings.train.augment != "none":
            return engine.Teachers(models=models)
        if not self._teacher_logits:
            self._teacher_logits = tuple(
                engine.predict_logits(model, self.data.train_x) for model in models
            )
        return engine.Teachers(models=models, logits=self._teacher_logits)

    def baseline(
        self, width: float, on_epoch: engine.EpochCallback | None = None, seed: int | None = None
    ) -> ModelRecord:
        """The student at ``width`` trained without distillation (``ce``) with the study's
        training settings and ``seed`` (default: the study's), cached like a teacher."""
        train = self.base.train if seed is None else replace(self.base.train, seed=seed)
        if (width, train.seed) not in self._baselines:
            choice = ModelChoice(self.base.student.model, width)
            _, self._baselines[width, train.seed] = self._trained(
                "baselines", "student", choice, train, on_epoch
            )
        return self._baselines[width, train.seed]

    def costs(self, settings: TrialSettings) -> dict[str, float]:
        """FLOPs, latency, size and compression of the trial's student architecture."""
        key = (settings.student.model, settings.student.width)
        if key not in self._costs:
            student = self._build("student", settings.student, "[student]")
            teacher_params = self._teachers[0][1].params if 0 in self._teachers else None
            batch = self.data.train_x[: settings.train.batch_size]
            self._costs[key] = cost_metrics(student, batch, teacher_params)
        return self._costs[key]

    def epochs(self, settings: TrialSettings) -> int:
        """Epochs a trial runs, all generations together."""
        main = self.registry.get("loss", settings.loss.name)
        if main.training == "generations":
            return settings.train.epochs * (settings.loss.params["generations"] + 1)
        return settings.train.epochs

    def run_trial(
        self,
        settings: TrialSettings,
        on_epoch: engine.EpochCallback | None = None,
        poll: Callable[[], None] | None = None,
    ) -> engine.FitResult:
        """Train the trial's student(s) with its losses; teacher outputs are shared.
        ``on_epoch`` and ``poll`` are :func:`engine.fit`'s."""
        terms = objective.loss_terms(self.registry, settings)
        main = terms[0][0]
        if main.training == "generations":
            return self._generations(settings, terms, on_epoch, poll)
        count = settings.loss.params["peers"] if main.training == "mutual" else 1
        students = [
            self._build("student", settings.student, "[student]", seed=settings.train.seed + k)
            for k in range(count)
        ]
        teachers = None
        if any(component.needs_teacher for component, _ in terms):
            teachers = self.teacher_signal(settings)
        return engine.fit(
            students,
            self.data,
            settings.train,
            self._objective(settings, terms, students[0], teachers and teachers.models[0]),
            teachers=teachers,
            lr_schedule=self._schedule(settings, "lr"),
            on_epoch=on_epoch,
            poll=poll,
        )

    def can_fuse(self) -> bool:
        """Whether every loss the study may use can train in fused groups: standard
        training (not mutual, not generations), no layers read, no loss modules."""
        for settings in self._reachable_losses():
            for component, _ in objective.loss_terms(self.registry, settings):
                if component.training != "standard" or component.layers:
                    return False
                if inspect.isclass(component.factory) and issubclass(component.factory, nn.Module):
                    return False
        return True

    def run_group(
        self,
        group: Sequence[TrialSettings],
        on_epochs: Sequence[engine.EpochCallback | None],
    ) -> list[engine.FitResult | Exception]:
        """Train trials that share the student's architecture together (fused); each
        result is the trial's metrics or the exception that ended it."""
        students = [
            self._build("student", s.student, "[student]", seed=s.train.seed) for s in group
        ]
        terms = [objective.loss_terms(self.registry, s) for s in group]
        teachers = None
        if any(component.needs_teacher for t in terms for component, _ in t):
            teachers = self.teacher_signal(group[0])
        return fused.fit_group(
            students,
            self.data,
            [s.train for s in group],
            [
                self._objective(s, t, student, None)
                for s, t, student in zip(group, terms, students, strict=True)
            ],
            teachers=teachers,
            lr_schedules=[self._schedule(s, "lr") for s in group],
            on_epochs=on_epochs,
        )

    # -- internals -----------------------------------------------------------------------

    def _generations(
        self,
        settings: TrialSettings,
        terms: list[objective.Term],
        on_epoch: engine.EpochCallback | None,
        poll: Callable[[], None] | None,
    ) -> engine.FitResult:
        """Born-again networks: generation 0 learns from labels, each next one from the last."""
        lr_schedule = self._schedule(settings, "lr")
        epochs = settings.train.epochs
        previous = self._build("student", settings.student, "[student]", seed=settings.train.seed)
        result = engine.fit(
            previous,
            self.data,
            settings.train,
            engine.Objective.of(objective.reporting_errors(self.registry.get("loss", "ce"))),
            lr_schedule=lr_schedule,
            on_epoch=on_epoch,
            poll=poll,
        )
        train_time = result.train_time_s
        for generation in range(1, settings.loss.params["generations"] + 1):
            previous.eval()
            teachers = engine.Teachers(
                models=(previous,),
                logits=()
                if settings.train.augment != "none"
                else (engine.predict_logits(previous, self.data.train_x),),
            )
            student = self._build(
                "student", settings.student, "[student]", seed=settings.train.seed + generation
            )
            result = engine.fit(
                student,
                self.data,
                settings.train,
                self._objective(settings, terms, student, previous),
                teachers=teachers,
                lr_schedule=lr_schedule,
                on_epoch=_shifted(on_epoch, generation * epochs),
                poll=poll,
            )
            train_time += result.train_time_s
            previous = student
        return replace(result, train_time_s=train_time)

    def _objective(
        self,
        settings: TrialSettings,
        terms: list[objective.Term],
        student: nn.Module,
        teacher: nn.Module | None,
    ) -> engine.Objective:
        shapes = objective.feature_shapes(student, teacher, terms, self.data.train_x[:2])
        return objective.build_objective(
            terms,
            shapes,
            self.device,
            lambda target: self._schedule(settings, target),
            scheduled_targets=("temperature", "alpha"),
        )

    def _schedule(self, settings: TrialSettings, target: str) -> engine.BoundSchedule:
        choice = settings.schedules[target]
        schedule = objective.reporting_errors(self.registry.get("schedule", choice.name))
        return lambda base, epoch, epochs: schedule(base, epoch, epochs, **choice.params)

    def _reachable_losses(self) -> list[TrialSettings]:
        """The base settings, once per loss the search may choose."""
        for dim in self.study.search:
            if dim.path == "loss.name":
                return [self.study.resolve({"loss.name": name}) for name in dim.choices]
        return [self.base]

    def _pretrained(self, number: int, choice: ModelChoice) -> tuple[nn.Module, ModelRecord]:
        """A teacher loaded from its weights file and evaluated, not trained."""
        model = self._build("teacher", choice, self._teacher_where(number))
        self._load_weights(model, choice.weights, number)
        record = ModelRecord(
            key=content_key({"weights": file_digest(choice.weights), "model": asdict(choice)}),
            model=choice.model,
            width=choice.width,
            val_accuracy=engine.accuracy(model, self.data.val_x, self.data.val_y),
            test_accuracy=engine.accuracy(model, self.data.test_x, self.data.test_y),
            params=engine.count_params(model),
            train_time_s=0.0,
            cached=True,
        )
        return model, record

    def _load_weights(self, model: nn.Module, path: str, number: int) -> None:
        """Load a state dict saved with ``torch.save(model.state_dict(), path)``."""
        where = "[teacher] weights" if number == 0 else f"[teacher] extra[{number - 1}] weights"
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as exc:
            raise ConfigError(
                f"{self.study.path}: {where} = {path!r}: unreadable checkpoint: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        try:
            model.load_state_dict(state)
        except Exception as exc:
            message = " ".join(str(exc).split())[:500]
            raise ConfigError(
                f"{self.study.path}: {where} = {path!r}: does not fit the model: {message}"
            ) from None

    def _teacher_where(self, number: int) -> str:
        return "[teacher] width" if number == 0 else f"[teacher] extra[{number - 1}] width"

    def _load_data(self) -> DataSplits:
        dataset = self.registry.get("dataset", self.base.dataset.name)
        try:
            data = dataset.factory(**self.base.dataset.params)
        except KdsweepError:
            raise
        except Exception as exc:
            raise PluginError(
                f"dataset '{dataset.name}' ({dataset.origin}) failed to load: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(data, DataSplits):
            raise PluginError(
                f"dataset '{dataset.name}' ({dataset.origin}) did not return DataSplits"
            )
        return data

    def _reachable_students(self) -> list[tuple[str, float]]:
        models = [self.base.student.model]
        widths: list[float] = [self.base.student.width]
        for dim in self.study.search:
            if dim.path == "student.model":
                models = list(dim.choices)
            if dim.path == "student.width":
                widths = list(dim.choices) if dim.kind == "categorical" else [dim.low, dim.high]
        return [(model, width) for model in models for width in widths]

    def _build(self, kind: str, choice: ModelChoice, where: str, seed: int = 0) -> nn.Module:
        component = self.registry.get(kind, choice.model)
        try:
            return engine.build_seeded(
                lambda: component.factory(
                    choice.width, self.data.num_classes, self.data.input_shape
                ),
                seed,
                self.device,
            )
        except Exception as exc:
            raise ConfigError(
                f"{self.study.path}: {where} = {choice.width!r}: {kind} '{choice.model}' "
                f"({component.origin}) cannot be built: {type(exc).__name__}: {exc}"
            ) from exc

    def _trained(
        self,
        cache_kind: str,
        kind: str,
        choice: ModelChoice,
        train: TrainSettings,
        on_epoch: engine.EpochCallback | None,
    ) -> tuple[nn.Module, ModelRecord]:
        component = self.registry.get(kind, choice.model)
        dataset = self.registry.get("dataset", self.base.dataset.name)
        lr = self.base.schedules["lr"]
        lr_origin = self.registry.get("schedule", lr.name).origin
        key = content_key(
            {
                "data": self.fingerprint,
                "dataset": [dataset.name, dataset.origin.version, self.base.dataset.params],
                "model": [
                    choice.model,
                    choice.width,
                    component.origin.plugin,
                    component.origin.version,
                ],
                "train": asdict(train),
                "lr_schedule": [lr.name, lr.params, lr_origin.plugin, lr_origin.version],
            }
        )
        model = self._build(kind, choice, f"[{kind}] width", seed=train.seed)
        cached = self.cache.load(cache_kind, key)
        if cached is not None:
            state, record = cached
            model.load_state_dict(state)
            return model, ModelRecord(**{**record["metrics"], "key": key, "cached": True})
        ce = objective.reporting_errors(self.registry.get("loss", "ce"))
        result = engine.fit(
            model,
            self.data,
            train,
            engine.Objective.of(ce),
            lr_schedule=self._schedule(self.base, "lr"),
            on_epoch=on_epoch,
        )
        metrics = {
            "model": choice.model,
            "width": choice.width,
            "val_accuracy": result.val_accuracy,
            "test_accuracy": result.test_accuracy,
            "params": result.params,
            "train_time_s": result.train_time_s,
        }
        self.cache.store(cache_kind, key, {"metrics": metrics}, model.state_dict())
        return model, ModelRecord(**metrics, key=key, cached=False)


def _shifted(on_epoch: engine.EpochCallback | None, offset: int) -> engine.EpochCallback | None:
    """The callback, seeing epochs numbered from ``offset`` (later generations)."""
    if on_epoch is None:
        return None
    return lambda report: on_epoch(replace(report, epoch=report.epoch + offset))
