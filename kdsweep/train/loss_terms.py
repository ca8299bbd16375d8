"""Turns a trial's loss settings into the engine's :class:`~kdsweep.train.fit.TrainingLoss`:
the main loss and the added terms, their layers, modules and schedules. Also the core's
own label loss, which trains teachers and baselines without any plugin."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdsweep.errors import ConfigError, PluginError
from kdsweep.plugin.registry import Component, Registry
from kdsweep.plugin.types import FeatureShapes, LossBatch, split_layers
from kdsweep.study.settings import ComponentChoice, TrialSettings
from kdsweep.train.features import FeatureTap, LayerNotFoundError, layer_names
from kdsweep.train.fit import WEIGHT, BoundSchedule, LossTerm, TrainingLoss

Term = tuple[Component, ComponentChoice]


def label_loss(batch: LossBatch) -> torch.Tensor:
    """Cross-entropy with the labels alone: how teachers, no-distillation baselines and the
    first generation of a self-distillation train."""
    return F.cross_entropy(batch.student_logits, batch.targets)


LABEL_LOSS = TrainingLoss((LossTerm(label_loss),))


def loss_terms(registry: Registry, settings: TrialSettings) -> list[Term]:
    """The main loss, then each added term, with their settings."""
    chosen = [settings.loss, *settings.extra_losses]
    return [(registry.get("loss", choice.name), choice) for choice in chosen]


def captured_layers(terms: list[Term], owner: str) -> tuple[str, ...]:
    """Every layer of ``owner`` (``student`` or ``teacher``) that the terms read."""
    names: dict[str, None] = {}
    for component, choice in terms:
        for param, layer_owner in component.layers.items():
            if layer_owner == owner:
                names.update(dict.fromkeys(split_layers(choice.params[param])))
    return tuple(names)


def check_layers(path: Path, terms: list[Term], models: dict[str, nn.Module | None]) -> None:
    """Every layer param names layers the models have: else an error naming the param."""
    for position, (component, choice) in enumerate(terms):
        section = "loss" if position == 0 else f"loss.add.{choice.name}"
        for param, owner in component.layers.items():
            model = models.get(owner)
            if model is None:
                raise ConfigError(
                    f"{path}: [{section}] {param}: loss '{component.name}' reads {owner} "
                    f"layers, but this study has no {owner} model for it"
                )
            if not split_layers(choice.params[param]):
                raise ConfigError(
                    f"{path}: [{section}] {param}: loss '{component.name}' needs {owner} layer "
                    f"names (layers: {', '.join(layer_names(model))})"
                )
            try:
                FeatureTap(model, split_layers(choice.params[param])).close()
            except LayerNotFoundError as exc:
                raise ConfigError(
                    f"{path}: [{section}] {param} = {choice.params[param]!r}: {exc}"
                ) from None


@torch.no_grad()
def feature_shapes(
    student: nn.Module,
    teacher: nn.Module | None,
    terms: list[Term],
    sample: torch.Tensor,
) -> FeatureShapes:
    """Shapes of the captured layers, from one forward pass in eval mode."""
    shapes = {}
    for owner, model in (("student", student), ("teacher", teacher)):
        layers = captured_layers(terms, owner)
        shapes[owner] = {}
        if model is None or not layers:
            continue
        was_training = model.training
        model.eval()
        with FeatureTap(model, layers) as tap:
            model(sample)
        model.train(was_training)
        shapes[owner] = {name: tuple(value.shape[1:]) for name, value in tap.features.items()}
    return FeatureShapes(student=shapes["student"], teacher=shapes["teacher"])


def build_training_loss(
    terms: list[Term],
    shapes: FeatureShapes,
    device: torch.device,
    schedules: list[dict[str, BoundSchedule]],
) -> TrainingLoss:
    """The training loss: loss modules built (and moved to ``device``), each term with its
    ``schedules`` (param, or ``WEIGHT``, -> schedule; see :func:`term_schedules`)."""
    built_terms, modules = [], []
    for position, (component, choice) in enumerate(terms):
        loss: Callable[..., torch.Tensor]
        role = "main loss" if position == 0 else "added term"
        if is_module_loss(component):
            module = _build_module(component, shapes, choice.params).to(device)
            modules.append(module)
            loss = CheckedLoss(component, module, role)
        else:
            loss = CheckedLoss(component, component.load(), role)
        batched = component.batched and _reporting_errors(component, component.batched)
        built_terms.append(
            LossTerm(loss, choice.params, choice.weight, schedules[position], batched)
        )
    return TrainingLoss(
        terms=tuple(built_terms),
        student_layers=captured_layers(terms, "student"),
        teacher_layers=captured_layers(terms, "teacher"),
        modules=tuple(modules),
    )


def is_module_loss(component: Component) -> bool:
    """Whether the loss is an ``nn.Module`` subclass (built per trial, trained with the
    student) rather than a function."""
    loaded = component.load()
    return inspect.isclass(loaded) and issubclass(loaded, nn.Module)


def _build_module(component: Component, shapes: FeatureShapes, params: dict[str, Any]) -> nn.Module:
    try:
        return component.load()(shapes, **params)
    except Exception as exc:
        raise PluginError(
            f"loss '{component.name}' ({component.origin}) could not be built: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


class CheckedLoss:
    """A loss term's callable, checked where a plugin's mistake would otherwise surface as
    a bare PyTorch message: its exceptions name the loss and plugin, and its first result
    must be a finite 0-dimensional tensor that requires grad (one host read per trial,
    at the first batch). It keeps its last result, detached (no host read, no autograd
    graph held), so that a diverged trial can name the terms that are not finite."""

    def __init__(self, component: Component, function: Callable[..., Any], role: str) -> None:
        self.call = _reporting_errors(component, function)
        self.label = f"{role} '{component.name}' ({component.origin})"
        self.checked = False
        self.last: Any = None

    def __call__(self, batch: LossBatch, **params: Any) -> torch.Tensor:
        value = self.call(batch, **params)
        if not self.checked:
            self._check_first(value)
            self.checked = True
        self.last = value.detach() if isinstance(value, torch.Tensor) else value
        return value

    def non_finite_label(self) -> str:
        """The term's label when its last result was not finite, else ``""`` (also when it
        was not called: a fused group computed it through its batched form)."""
        value = self.last
        if value is None:
            return ""
        finite = isinstance(value, torch.Tensor) and bool(torch.isfinite(value).all())
        return "" if finite else self.label

    def _check_first(self, value: Any) -> None:
        problem = None
        if not isinstance(value, torch.Tensor):
            problem = f"returned a {type(value).__name__}, not a tensor"
        elif value.dim() != 0:
            problem = f"returned a tensor of shape {tuple(value.shape)}, not a scalar (0-d)"
        elif torch.is_grad_enabled() and not value.requires_grad:
            problem = "returned a tensor that does not require grad (detached from the model)"
        elif not bool(torch.isfinite(value.detach())):
            problem = f"returned {float(value.detach())} at the first batch"
        if problem:
            raise PluginError(f"{self.label} {problem}: a loss returns a finite scalar tensor")


def _reporting_errors(component: Component, function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` with its exceptions re-raised naming the component's plugin."""

    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except torch.cuda.OutOfMemoryError:
            raise  # the device's limit, not the plugin's fault
        except Exception as exc:
            raise PluginError(
                f"{component.kind} '{component.name}' ({component.origin}) raised "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    return call


def reporting_errors(component: Component) -> Callable[..., Any]:
    """The component's own callable, with its exceptions re-raised naming the plugin."""
    return _reporting_errors(component, component.load())


def bound_schedule(
    registry: Registry, settings: TrialSettings, target: str
) -> BoundSchedule | None:
    """The trial's schedule of ``target`` with its params bound, or ``None`` when the study
    sets none (the value then stays as set)."""
    choice = settings.schedules.get(target)
    if choice is None:
        return None
    schedule = reporting_errors(registry.get("schedule", choice.name))
    return lambda base, epoch, epochs: schedule(base, epoch, epochs, **choice.params)


def term_schedules(
    registry: Registry, settings: TrialSettings, terms: list[Term]
) -> list[dict[str, BoundSchedule]]:
    """Per term, the schedules that move it: ``temperature`` and ``alpha`` (the main loss's
    params of those names, when it has them), ``loss.<param>`` (the main loss),
    ``loss.add.<term>.<param>`` and ``loss.add.<term>.weight`` (an added term)."""
    positions = {choice.name: k for k, (_, choice) in enumerate(terms) if k > 0}
    moved: list[dict[str, BoundSchedule]] = [{} for _ in terms]
    for target in settings.schedules:
        schedule = bound_schedule(registry, settings, target)
        if target == "lr" or schedule is None:
            continue
        parts = target.split(".")
        if len(parts) == 1:  # temperature, alpha
            position, key = 0, target
        elif parts[:2] == ["loss", "add"]:
            position, key = positions[parts[2]], parts[3]
        else:
            position, key = 0, parts[1]
        if key == WEIGHT or key in terms[position][1].params:
            moved[position][key] = schedule
    return moved
