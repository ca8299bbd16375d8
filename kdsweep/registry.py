"""The registry: component name -> component, with the plugin it came from.

Plugins receive a :class:`Registry` in their hooks and call its ``add_*`` methods; they
never edit the core. Names are unique per kind: a second plugin registering the same
name is an error naming both plugins.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from kdsweep.components import DatasetLoader, LossFn, ModelBuilder, ScheduleFn
from kdsweep.errors import PluginError, UnknownComponentError
from kdsweep.suggest import did_you_mean

KINDS = ("teacher", "student", "loss", "schedule", "dataset")
TRAINING_MODES = ("standard", "mutual", "generations")
_MODE_PARAM = {"mutual": "peers", "generations": "generations"}
_LAYER_OWNERS = ("student", "teacher")
_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]*$")
_PARAM_TYPES = (bool, int, float, str)


@dataclass(frozen=True)
class Origin:
    """Where a component came from: plugin name, distribution and its version."""

    plugin: str
    distribution: str
    version: str

    def __str__(self) -> str:
        return f"plugin '{self.plugin}' ({self.distribution} {self.version})"


@dataclass(frozen=True)
class Component:
    """One registered component.

    :param factory: the callable the plugin gave (model builder, loss, schedule, loader).
    :param params: declared hyperparameters with their defaults; a study may set or search them.
    """

    kind: str
    name: str
    factory: Callable[..., Any]
    origin: Origin
    params: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    needs_teacher: bool = False
    layers: Mapping[str, str] = field(default_factory=dict)  # layer param -> student|teacher
    training: str = "standard"  # standard | mutual | generations


_UNBOUND = Origin("<unknown>", "<unknown>", "?")


class Registry:
    """Holds every component the plugins registered, by kind and name."""

    def __init__(self) -> None:
        self._components: dict[str, dict[str, Component]] = {kind: {} for kind in KINDS}
        self._origin = _UNBOUND

    @contextmanager
    def registering_for(self, origin: Origin) -> Iterator[Registry]:
        """Stamp components added inside the block with ``origin`` (used by the core)."""
        previous, self._origin = self._origin, origin
        try:
            yield self
        finally:
            self._origin = previous

    def add_teacher(self, name: str, build: ModelBuilder, *, description: str = "") -> None:
        """Register a teacher model: ``build(width, num_classes, input_shape) -> nn.Module``."""
        self._add("teacher", name, build, {}, description)

    def add_student(self, name: str, build: ModelBuilder, *, description: str = "") -> None:
        """Register a student model: ``build(width, num_classes, input_shape) -> nn.Module``."""
        self._add("student", name, build, {}, description)

    def add_loss(
        self,
        name: str,
        loss: LossFn,
        *,
        params: Mapping[str, Any] | None = None,
        needs_teacher: bool = True,
        layers: Mapping[str, str] | None = None,
        training: str = "standard",
        description: str = "",
    ) -> None:
        """Register a training loss: ``loss(batch: LossBatch, **params) -> scalar tensor``.

        ``loss`` may also be an ``nn.Module`` subclass, built once per trial as
        ``loss(shapes: FeatureShapes, **params)`` and trained with the student.
        Params named ``temperature`` and ``alpha`` follow the study's schedules.

        :param needs_teacher: ``False`` when the loss trains without a pre-trained teacher.
        :param layers: params whose values name layers to capture, each mapped to
            ``"student"`` or ``"teacher"`` (a value may list several, comma-separated).
        :param training: ``"mutual"`` trains ``peers`` students together (declare a
            ``peers`` param); ``"generations"`` trains ``generations`` students in turn,
            each distilling from the one before (declare a ``generations`` param).
        """
        params = dict(params or {})
        layers = dict(layers or {})
        origin = self._origin
        if training not in TRAINING_MODES:
            raise PluginError(
                f"{origin} registered loss '{name}' with training={training!r} "
                f"(one of {', '.join(TRAINING_MODES)})"
            )
        required = _MODE_PARAM.get(training)
        if required and not isinstance(params.get(required), int):
            raise PluginError(
                f"{origin} registered {training} loss '{name}' without an int param '{required}'"
            )
        for param, owner in layers.items():
            if owner not in _LAYER_OWNERS or not isinstance(params.get(param), str):
                raise PluginError(
                    f"{origin} registered loss '{name}' with layer param '{param}': it must be "
                    "a declared str param mapped to 'student' or 'teacher'"
                )
        self._add(
            "loss",
            name,
            loss,
            params,
            description,
            needs_teacher=needs_teacher and training == "standard",
            layers=layers,
            training=training,
        )

    def add_schedule(
        self,
        name: str,
        schedule: ScheduleFn,
        *,
        params: Mapping[str, Any] | None = None,
        description: str = "",
    ) -> None:
        """Register a schedule: ``schedule(base, epoch, epochs, **params) -> value``."""
        self._add("schedule", name, schedule, params or {}, description)

    def add_dataset(
        self,
        name: str,
        load: DatasetLoader,
        *,
        params: Mapping[str, Any] | None = None,
        description: str = "",
    ) -> None:
        """Register a dataset: ``load(**params) -> DataSplits``."""
        self._add("dataset", name, load, params or {}, description)

    def get(self, kind: str, name: str) -> Component:
        """The component ``name`` of ``kind``; an error listing the known names otherwise."""
        try:
            return self._components[kind][name]
        except KeyError:
            known = sorted(self._components[kind])
            raise UnknownComponentError(
                f"unknown {kind} '{name}'{did_you_mean(name, known)} "
                f"(registered: {', '.join(known) or 'none'})"
            ) from None

    def names(self, kind: str) -> list[str]:
        """Sorted names registered for ``kind``."""
        return sorted(self._components[kind])

    def components(self, kind: str) -> list[Component]:
        """Components of ``kind``, sorted by name."""
        return [self._components[kind][name] for name in self.names(kind)]

    def _add(
        self,
        kind: str,
        name: str,
        factory: Callable[..., Any],
        params: Mapping[str, Any],
        description: str,
        needs_teacher: bool = False,
        layers: Mapping[str, str] | None = None,
        training: str = "standard",
    ) -> None:
        origin = self._origin
        if not isinstance(name, str) or not _NAME_PATTERN.match(name):
            raise PluginError(f"{origin} registered a {kind} with an invalid name {name!r}")
        if not callable(factory):
            raise PluginError(f"{origin} registered {kind} '{name}' with a non-callable")
        for key, default in params.items():
            if not isinstance(default, _PARAM_TYPES):
                raise PluginError(
                    f"{origin} declared param '{key}' of {kind} '{name}' with default "
                    f"{default!r}: defaults must be bool, int, float or str"
                )
        existing = self._components[kind].get(name)
        if existing is not None:
            raise PluginError(
                f"{kind} '{name}' is registered twice: by {existing.origin} and by {origin}"
            )
        self._components[kind][name] = Component(
            kind=kind,
            name=name,
            factory=factory,
            origin=origin,
            params=dict(params),
            description=description or _first_doc_line(factory),
            needs_teacher=needs_teacher,
            layers=dict(layers or {}),
            training=training,
        )


def _first_doc_line(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""
