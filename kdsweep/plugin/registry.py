"""The registry: component name -> component, with the plugin it came from.

Plugins receive a :class:`Registry` in their hooks and call its ``add_*`` methods; they
never edit the core. Names are unique per kind: a second plugin registering the same
name is an error naming both plugins. A plugin may offer a component as its kind's
default (``default=True``): a study that names no component of that kind uses it.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from kdsweep.errors import PluginError, UnknownComponentError
from kdsweep.plugin.checks import checked_ranges, reserved_problem, signature_problem
from kdsweep.plugin.deferred import load_reference, reference_problem
from kdsweep.plugin.ranges import Range
from kdsweep.plugin.types import DatasetLoader, LossFn, ModelBuilder, ScheduleFn
from kdsweep.text import did_you_mean

KINDS = ("teacher", "student", "loss", "schedule", "dataset")
_LAYER_OWNERS = ("student", "teacher")
_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]*$")
_PARAM_TYPES = (bool, int, float, str)


class Training(StrEnum):
    """How a loss trains: one student (``standard``), ``peers`` students together
    (``mutual``), or ``generations`` students in turn, each distilling from the last."""

    STANDARD = "standard"
    MUTUAL = "mutual"
    GENERATIONS = "generations"

    @property
    def count_param(self) -> str | None:
        """The int param that says how many students the mode trains, if any."""
        return {Training.MUTUAL: "peers", Training.GENERATIONS: "generations"}.get(self)


@dataclass(frozen=True)
class Origin:
    """Where a component came from: plugin name, distribution and its version."""

    plugin: str
    distribution: str
    version: str

    def __str__(self) -> str:
        version = "" if self.version == "local" else f" {self.version}"  # a local file
        return f"plugin '{self.plugin}' ({self.distribution}{version})"


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
    training: Training = Training.STANDARD
    default: bool = False  # offered as its kind's default
    ranges: Mapping[str, Range] = field(default_factory=dict)  # numeric param -> allowed
    batched: Callable[..., Any] | None = None  # a loss's form for k students at once

    def load(self) -> Callable[..., Any]:
        """The plugin's callable: the object it registered, or the one its
        ``"package.module:attribute"`` reference names, imported (and checked) on first use."""
        if not isinstance(self.factory, str):
            return self.factory
        return _loaded(self)  # Python keeps the module imported: later calls are cheap


def _loaded(component: Component) -> Callable[..., Any]:
    """Import a component's reference and check it as registration checks an object."""
    where = f"{component.origin} registered {component.kind} '{component.name}'"
    try:
        loaded = load_reference(str(component.factory))
    except Exception as exc:
        raise PluginError(
            f"{where} as {component.factory!r}, which cannot be imported: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    problem = (
        "it is not callable"
        if not callable(loaded)
        else signature_problem(component.kind, loaded, component.params)
    )
    if problem:
        raise PluginError(f"{where} as {component.factory!r}: {problem}")
    return loaded


_UNBOUND = Origin("<unknown>", "<unknown>", "?")
# The plugin whose hook is running: the manager sets it around each hook implementation.
_REGISTERING: ContextVar[Origin] = ContextVar("kdsweep_registering", default=_UNBOUND)


@contextmanager
def registering_for(origin: Origin) -> Iterator[None]:
    """Stamp components added inside the block with ``origin`` (used by the manager)."""
    token = _REGISTERING.set(origin)
    try:
        yield
    finally:
        _REGISTERING.reset(token)


class Registry:
    """Holds every component the plugins registered, by kind and name.

    Each ``add_*`` method takes the object (a function or class) or a reference to it,
    ``"package.module:attribute"``, imported when the component is first used: listing
    and validating against components so registered imports none of their modules."""

    def __init__(self) -> None:
        self._components: dict[str, dict[str, Component]] = {kind: {} for kind in KINDS}

    @contextmanager
    def registering_for(self, origin: Origin) -> Iterator[Registry]:
        """Stamp components added inside the block with ``origin``."""
        with registering_for(origin):
            yield self

    def add_teacher(
        self, name: str, build: ModelBuilder | str, *, description: str = "", default: bool = False
    ) -> None:
        """Register a teacher model: ``build(width, num_classes, input_shape) -> nn.Module``."""
        self._add(Component("teacher", name, build, _origin(), {}, description, default=default))

    def add_student(
        self, name: str, build: ModelBuilder | str, *, description: str = "", default: bool = False
    ) -> None:
        """Register a student model: ``build(width, num_classes, input_shape) -> nn.Module``."""
        self._add(Component("student", name, build, _origin(), {}, description, default=default))

    def add_loss(
        self,
        name: str,
        loss: LossFn | str,
        *,
        params: Mapping[str, Any] | None = None,
        ranges: Mapping[str, str] | None = None,
        needs_teacher: bool = True,
        layers: Mapping[str, str] | None = None,
        training: str = "standard",
        description: str = "",
        default: bool = False,
        batched: LossFn | None = None,
    ) -> None:
        """Register a training loss: ``loss(batch: LossBatch, **params) -> scalar tensor``.

        ``loss`` may also be an ``nn.Module`` subclass, built once per trial as
        ``loss(shapes: FeatureShapes, **params)`` and trained with the student.
        Params named ``temperature`` and ``alpha`` follow the study's schedules.

        :param ranges: the allowed interval of numeric params, e.g. ``{"temperature":
            "(0, inf)", "alpha": "[0, 1]"}``: study values, searched ranges and the values
            a schedule moves them to are checked against it before training.
        :param needs_teacher: ``False`` when the loss trains without a pre-trained teacher.
        :param layers: params whose values name layers to capture, each mapped to
            ``"student"`` or ``"teacher"`` (a value may list several, comma-separated).
        :param training: ``"mutual"`` trains ``peers`` students together (declare a
            ``peers`` param); ``"generations"`` trains ``generations`` students in turn,
            each distilling from the one before (declare a ``generations`` param).
        :param default: the loss a study uses when its ``[loss]`` names none.
        :param batched: optional, the same loss for k students at once, which fused trials
            then use instead of k calls: ``batched(batch, **params) -> tensor of shape
            (k,)``, where ``batch.student_logits`` is ``(k, batch, classes)`` (targets and
            teacher logits as for ``loss``) and each param is a tensor of shape ``(k,)``,
            one value per student; element i must equal ``loss`` on student i.
        """
        params = dict(params or {})
        layers = dict(layers or {})
        origin = _origin()
        try:
            mode = Training(training)
        except ValueError:
            raise PluginError(
                f"{origin} registered loss '{name}' with training={training!r} "
                f"(one of {', '.join(Training)})"
            ) from None
        required = mode.count_param
        if required and not isinstance(params.get(required), int):
            raise PluginError(
                f"{origin} registered {mode} loss '{name}' without an int param '{required}'"
            )
        for param, owner in layers.items():
            if owner not in _LAYER_OWNERS or not isinstance(params.get(param), str):
                raise PluginError(
                    f"{origin} registered loss '{name}' with layer param '{param}': it must be "
                    "a declared str param mapped to 'student' or 'teacher'"
                )
        self._add(
            Component(
                "loss",
                name,
                loss,
                origin,
                params,
                description,
                needs_teacher=needs_teacher and mode is Training.STANDARD,
                layers=layers,
                training=mode,
                default=default,
                batched=batched,
            ),
            ranges,
        )

    def add_schedule(
        self,
        name: str,
        schedule: ScheduleFn | str,
        *,
        params: Mapping[str, Any] | None = None,
        ranges: Mapping[str, str] | None = None,
        description: str = "",
    ) -> None:
        """Register a schedule: ``schedule(base, epoch, epochs, **params) -> value``.

        A value with no schedule in the study stays as set, so no default is needed.
        ``ranges`` as for :meth:`add_loss`."""
        component = Component(
            "schedule", name, schedule, _origin(), dict(params or {}), description
        )
        self._add(component, ranges)

    def add_dataset(
        self,
        name: str,
        load: DatasetLoader | str,
        *,
        params: Mapping[str, Any] | None = None,
        ranges: Mapping[str, str] | None = None,
        description: str = "",
        default: bool = False,
    ) -> None:
        """Register a dataset: ``load(**params) -> DataSplits`` (``ranges`` as for
        :meth:`add_loss`)."""
        params = dict(params or {})
        self._add(
            Component("dataset", name, load, _origin(), params, description, default=default),
            ranges,
        )

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

    def default(self, kind: str) -> str:
        """The name of the one component of ``kind`` offered as the default; an error when
        no plugin, or more than one, offers one."""
        offered = [c for c in self.components(kind) if c.default]
        if len(offered) == 1:
            return offered[0].name
        if not offered:
            raise UnknownComponentError(
                f"no plugin offers a default {kind}: name one "
                f"(registered: {', '.join(self.names(kind)) or 'none'})"
            )
        shown = ", ".join(f"'{c.name}' by {c.origin}" for c in offered)
        raise UnknownComponentError(f"several plugins offer a default {kind} ({shown}): name one")

    def names(self, kind: str) -> list[str]:
        """Sorted names registered for ``kind``."""
        return sorted(self._components[kind])

    def components(self, kind: str) -> list[Component]:
        """Components of ``kind``, sorted by name."""
        return [self._components[kind][name] for name in self.names(kind)]

    def _add(self, component: Component, ranges: Mapping[str, str] | None = None) -> None:
        """Check the component against the plugin contract, then keep it; ``ranges`` are
        the declared intervals of its numeric params (interval notation)."""
        kind, name, origin = component.kind, component.name, component.origin
        if not isinstance(name, str) or not _NAME_PATTERN.match(name):
            raise PluginError(f"{origin} registered a {kind} with an invalid name {name!r}")
        deferred = isinstance(component.factory, str)  # checked when first loaded
        if not deferred and not callable(component.factory):
            raise PluginError(f"{origin} registered {kind} '{name}' with a non-callable")
        for key, default in component.params.items():
            if not isinstance(default, _PARAM_TYPES):
                raise PluginError(
                    f"{origin} declared param '{key}' of {kind} '{name}' with default "
                    f"{default!r}: defaults must be bool, int, float or str"
                )
        problem = reserved_problem(kind, component.params) or (
            reference_problem(component.factory)
            if deferred
            else signature_problem(kind, component.factory, component.params)
        )
        if problem:
            raise PluginError(f"{origin} registered {kind} '{name}': {problem}")
        existing = self._components[kind].get(name)
        if existing is not None:
            raise PluginError(
                f"{kind} '{name}' is registered twice: by {existing.origin} and by {origin}"
            )
        checked = checked_ranges(origin, name, component.params, ranges)
        description = component.description or (
            "" if deferred else _first_doc_line(component.factory)
        )
        self._components[kind][name] = replace(component, ranges=checked, description=description)


def _origin() -> Origin:
    return _REGISTERING.get()


def _first_doc_line(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""
