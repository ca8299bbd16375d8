"""What every trial of a study shares in one process: data on the device, the teacher,
its logits on the training set, and the no-distillation baselines.

Turns resolved settings into engine calls; knows nothing of Optuna or MLflow.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from kdsweep import engine
from kdsweep.cache import ModelCache, content_key, data_fingerprint
from kdsweep.components import DataSplits
from kdsweep.config import Study
from kdsweep.errors import ConfigError, KdsweepError, PluginError
from kdsweep.registry import Component
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
        self._teacher_logits: torch.Tensor | None = None
        self._teacher_record: ModelRecord | None = None
        self._baselines: dict[float, ModelRecord] = {}

    def check_models(self) -> None:
        """Build the teacher and each reachable student once: a bad width fails before training."""
        self._build("teacher", self.base.teacher, "[teacher] width")
        for model, width in self._reachable_students():
            self._build("student", ModelChoice(model, width), "[student] width / [search] width")

    @property
    def needs_teacher(self) -> bool:
        """Whether any loss the study may use needs a teacher."""
        names = {self.base.loss.name}
        for dim in self.study.search:
            if dim.path == "loss.name":
                names = set(dim.choices)
        return any(self.registry.get("loss", name).needs_teacher for name in names)

    def teacher(self, on_epoch: engine.EpochCallback | None = None) -> ModelRecord:
        """The teacher's record; trains it (and caches it) unless the cache has it."""
        if self._teacher_record is None:
            model, self._teacher_record = self._trained(
                "teachers", "teacher", self.base.teacher, self.base.teacher_train, on_epoch
            )
            self._teacher_logits = engine.predict_logits(model, self.data.train_x)
        return self._teacher_record

    def baseline(self, width: float, on_epoch: engine.EpochCallback | None = None) -> ModelRecord:
        """The student at ``width`` trained without distillation (``ce``), cached like a teacher."""
        if width not in self._baselines:
            choice = ModelChoice(self.base.student.model, width)
            _, self._baselines[width] = self._trained(
                "baselines", "student", choice, self.base.train, on_epoch
            )
        return self._baselines[width]

    def run_trial(
        self, settings: TrialSettings, on_epoch: engine.EpochCallback | None = None
    ) -> engine.FitResult:
        """Train the trial's student with its loss; the teacher's logits are shared."""
        loss_component = self.registry.get("loss", settings.loss.name)
        teacher_logits = None
        if loss_component.needs_teacher:
            self.teacher()
            teacher_logits = self._teacher_logits
        bound = engine.BoundLoss(
            fn=_reporting_errors(loss_component),
            params=settings.loss.params,
            schedules={
                target: self._schedule(settings, target)
                for target in settings.schedules
                if target in settings.loss.params
            },
        )
        student = self._build("student", settings.student, "[student]", seed=settings.train.seed)
        return engine.fit(
            student,
            self.data,
            settings.train,
            bound,
            teacher_logits=teacher_logits,
            lr_schedule=self._schedule(settings, "lr"),
            on_epoch=on_epoch,
        )

    # -- internals -----------------------------------------------------------------------

    def _schedule(self, settings: TrialSettings, target: str) -> engine.BoundSchedule:
        choice = settings.schedules[target]
        schedule = _reporting_errors(self.registry.get("schedule", choice.name))
        return lambda base, epoch, epochs: schedule(base, epoch, epochs, **choice.params)

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
        if cached is not None and cached[0] is not None:
            state, record = cached
            model.load_state_dict(state)
            return model, ModelRecord(**{**record["metrics"], "key": key, "cached": True})
        ce = engine.BoundLoss(fn=_reporting_errors(self.registry.get("loss", "ce")))
        result = engine.fit(
            model,
            self.data,
            train,
            ce,
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


def _reporting_errors(component: Component) -> Callable[..., Any]:
    """The component's callable, with its exceptions re-raised naming the plugin."""
    function = component.factory

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except Exception as exc:
            raise PluginError(
                f"{component.kind} '{component.name}' ({component.origin}) raised "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    return call
