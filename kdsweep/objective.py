"""Turns a trial's loss settings into the engine's :class:`~kdsweep.engine.Objective`:
the main loss and the added terms, their layers, modules and schedules."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdsweep import engine
from kdsweep.components import FeatureShapes
from kdsweep.errors import ConfigError, PluginError
from kdsweep.features import FeatureTap, LayerNotFoundError, layer_names, split_layers
from kdsweep.registry import Component, Registry
from kdsweep.settings import ComponentChoice, TrialSettings

Term = tuple[Component, ComponentChoice]


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


def build_objective(
    terms: list[Term],
    shapes: FeatureShapes,
    device: torch.device,
    schedule_for: Callable[[str], engine.BoundSchedule],
    scheduled_targets: tuple[str, ...],
) -> engine.Objective:
    """The objective: loss modules built (and moved to ``device``), schedules bound to the
    main loss's params named like a schedule target (``temperature``, ``alpha``)."""
    built_terms, modules = [], []
    for position, (component, choice) in enumerate(terms):
        loss: Callable[..., torch.Tensor]
        if inspect.isclass(component.factory) and issubclass(component.factory, nn.Module):
            module = _build_module(component, shapes, choice.params).to(device)
            modules.append(module)
            loss = _reporting_errors(component, module)
        else:
            loss = _reporting_errors(component, component.factory)
        schedules = {}
        if position == 0:
            schedules = {
                target: schedule_for(target)
                for target in scheduled_targets
                if target in choice.params
            }
        built_terms.append(engine.LossTerm(loss, choice.params, choice.weight, schedules))
    return engine.Objective(
        terms=tuple(built_terms),
        student_layers=captured_layers(terms, "student"),
        teacher_layers=captured_layers(terms, "teacher"),
        modules=tuple(modules),
    )


def _build_module(component: Component, shapes: FeatureShapes, params: dict[str, Any]) -> nn.Module:
    try:
        return component.factory(shapes, **params)
    except Exception as exc:
        raise PluginError(
            f"loss '{component.name}' ({component.origin}) could not be built: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


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
    return _reporting_errors(component, component.factory)
