"""The models trials are compared with: the teachers and the no-distillation baselines.

Each is trained once per content hash of (data, model, width, training settings, plugin
versions) with the core's label loss and cached on disk, or (a teacher with ``weights``)
loaded and evaluated.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch import nn

from kdsweep.plugin.registry import Registry
from kdsweep.plugin.types import DataSplits
from kdsweep.study.settings import ModelChoice, TrainSettings, TrialSettings
from kdsweep.timeline import phase
from kdsweep.train.cache import ModelCache, content_key, data_fingerprint, file_digest
from kdsweep.train.fit import EpochCallback, Recipe, accuracy, count_params, fit
from kdsweep.train.loss_terms import LABEL_LOSS, bound_schedule
from kdsweep.train.models import ModelFactory, teacher_where


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


class References:
    """Teachers (by number) and baselines (by width and seed), trained on first use."""

    def __init__(
        self, base: TrialSettings, registry: Registry, models: ModelFactory, cache: ModelCache
    ) -> None:
        self.base = base
        self.registry = registry
        self.models = models
        self.cache = cache
        self.fingerprint = data_fingerprint(models.data)
        self.teachers: dict[int, tuple[nn.Module, ModelRecord]] = {}  # eval-mode model, record
        self._baselines: dict[tuple[float, int], ModelRecord] = {}

    @property
    def data(self) -> DataSplits:
        """The study's data on the training device."""
        return self.models.data

    def teacher(self, number: int = 0, on_epoch: EpochCallback | None = None) -> ModelRecord:
        """Teacher ``number``'s record; trains it (and caches it) unless the cache has it."""
        if number not in self.teachers:
            choice = self.base.teachers[number]
            if choice.weights:
                model, record = self._pretrained(number, choice)
            else:
                model, record = self._trained(
                    "teachers", "teacher", choice, self.base.teacher_train, on_epoch
                )
            self.teachers[number] = (model.eval(), record)
        return self.teachers[number][1]

    def baseline(
        self, width: float, on_epoch: EpochCallback | None = None, seed: int | None = None
    ) -> ModelRecord:
        """The student at ``width`` trained on labels alone with the study's training
        settings and ``seed`` (default: the study's), cached like a teacher."""
        train = self.base.train if seed is None else replace(self.base.train, seed=seed)
        if (width, train.seed) not in self._baselines:
            choice = ModelChoice(self.base.student.model, width)
            _, self._baselines[width, train.seed] = self._trained(
                "baselines", "student", choice, train, on_epoch
            )
        return self._baselines[width, train.seed]

    def _pretrained(self, number: int, choice: ModelChoice) -> tuple[nn.Module, ModelRecord]:
        """A teacher loaded from its weights file and evaluated, not trained."""
        model = self.models.build("teacher", choice, teacher_where(number))
        self.models.load_weights(model, choice.weights, number)
        record = ModelRecord(
            key=content_key({"weights": file_digest(choice.weights), "model": asdict(choice)}),
            model=choice.model,
            width=choice.width,
            val_accuracy=accuracy(model, self.data.val_x, self.data.val_y),
            test_accuracy=accuracy(model, self.data.test_x, self.data.test_y),
            params=count_params(model),
            train_time_s=0.0,
            cached=True,
        )
        return model, record

    def _key(self, kind: str, choice: ModelChoice, train: TrainSettings) -> str:
        """The content hash a trained reference is cached under."""
        component = self.registry.get(kind, choice.model)
        dataset = self.registry.get("dataset", self.base.dataset.name)
        description = {
            "data": self.fingerprint,
            "dataset": [dataset.name, dataset.origin.version, self.base.dataset.params],
            "model": [
                choice.model,
                choice.width,
                component.origin.plugin,
                component.origin.version,
            ],
            "train": asdict(train),
        }
        lr = self.base.schedules.get("lr")
        if lr is not None:
            lr_origin = self.registry.get("schedule", lr.name).origin
            description["lr_schedule"] = [lr.name, lr.params, lr_origin.plugin, lr_origin.version]
        return content_key(description)

    def _trained(
        self,
        cache_kind: str,
        kind: str,
        choice: ModelChoice,
        train: TrainSettings,
        on_epoch: EpochCallback | None,
    ) -> tuple[nn.Module, ModelRecord]:
        key = self._key(kind, choice, train)
        model = self.models.build(kind, choice, f"[{kind}] width", seed=train.seed)
        with self.cache.lock(cache_kind, key):  # concurrent processes train it once
            cached = self._cached(model, cache_kind, key)
            if cached is not None:
                return model, cached
            with phase(cache_kind.removesuffix("s")):  # "teacher" or "baseline"
                metrics = self._fit(model, choice, train, on_epoch)
            # As a model loaded from the cache is: its layout decides the last bits of its
            # outputs, and the process that trained it must give the others' logits.
            model.to(memory_format=torch.contiguous_format)
            self.cache.store(cache_kind, key, {"metrics": metrics}, model.state_dict())
        return model, ModelRecord(**metrics, key=key, cached=False)

    def _cached(self, model: nn.Module, cache_kind: str, key: str) -> ModelRecord | None:
        """The cached record, with the cached weights loaded into ``model``; ``None`` (the
        entry moved aside) when the cache has none that fits."""
        cached = self.cache.load(cache_kind, key)
        if cached is None:
            return None
        state, record = cached
        try:
            model.load_state_dict(state)
            return ModelRecord(**{**record["metrics"], "key": key, "cached": True})
        except Exception as exc:
            self.cache.discard(cache_kind, key, f"{type(exc).__name__}: {exc}")
            return None

    def _fit(
        self,
        model: nn.Module,
        choice: ModelChoice,
        train: TrainSettings,
        on_epoch: EpochCallback | None,
    ) -> dict[str, Any]:
        """Train a reference model on labels alone; its metrics as the cache keeps them."""
        lr_schedule = bound_schedule(self.registry, self.base, "lr")
        result = fit(model, self.data, Recipe(train, LABEL_LOSS, lr_schedule), on_epoch=on_epoch)
        metrics = {
            "model": choice.model,
            "width": choice.width,
            "val_accuracy": result.val_accuracy,
            "test_accuracy": result.test_accuracy,
            "params": result.params,
            "train_time_s": result.train_time_s,
        }
        return metrics
