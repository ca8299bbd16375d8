"""The study file's schema: each setting's type, default and check, and the checker
that turns a wrong value into one :class:`~kdsweep.errors.ConfigError` naming file,
section, key and value."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdsweep.errors import ConfigError, UnknownComponentError
from kdsweep.plugin.registry import Component, Registry
from kdsweep.study.settings import TrainSettings

AUGMENTATIONS = ("none", "crop", "flip", "crop_flip")  # batched on the device, see train
OPTIMIZERS = ("sgd", "adam", "adamw")
PRECISIONS = ("auto", "fp32", "bf16")
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")
SCHEDULE_TARGETS = ("temperature", "alpha", "lr")  # loss params and the learning rate
# Which trained students a study keeps (as MLflow logged models): the Pareto front and the
# best student per width, the best per width only, every complete trial, or none.
KEEP = ("front", "best", "all", "none")

Check = Callable[[Any], str | None]  # returns a complaint, or None when the value is fine


def positive(value: Any) -> str | None:
    """Complain unless ``value > 0``."""
    return None if value > 0 else "must be > 0"


def non_negative(value: Any) -> str | None:
    """Complain unless ``value >= 0``."""
    return None if value >= 0 else "must be >= 0"


def fraction(value: Any) -> str | None:
    """Complain unless ``0 <= value < 1``."""
    return None if 0 <= value < 1 else "must be in [0, 1)"


def one_of(options: tuple[str, ...]) -> Check:
    """A check that complains unless the value is one of ``options``."""
    return lambda value: None if value in options else f"must be one of {', '.join(options)}"


@dataclass(frozen=True)
class Field:
    """The type (``int``, ``float``, ``str``, ``bool``, ``"number"`` or ``"strings"``),
    default and check of one setting."""

    kind: Any
    default: Any = None
    check: Check | None = None


STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")


def study_name(value: Any) -> str | None:
    """Complain unless ``value`` is a study name: 1 to 100 letters, digits, ``_``, ``.``
    or ``-``, starting with a letter or digit, without ``..`` (it names folders and runs)."""
    if STUDY_NAME.match(value) and ".." not in value:
        return None
    return (
        "must be 1 to 100 letters, digits, '_', '.' or '-', start with a letter or digit "
        "and hold no '..' (it names the report folder, the Optuna study and the MLflow "
        "experiment)"
    )


def registered_model_name(value: Any) -> str | None:
    """Complain unless ``value`` can name a model in MLflow's Model Registry."""
    if STUDY_NAME.match(value) and ".." not in value:
        return None
    return "must be 1 to 100 letters, digits, '_', '.' or '-', starting with a letter or digit"


def count_or_auto(value: Any) -> str | None:
    """Complain unless ``value`` is ``"auto"`` or a whole number >= 1."""
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return None
    return 'must be "auto" or a whole number >= 1'


STUDY_FIELDS = {
    "name": Field(str, None, study_name),
    "n_trials": Field(int, 20, positive),
    "timeout": Field(float, None, positive),  # seconds
    # Sampler and pruner names and options are Optuna's: the search layer checks them.
    "sampler": Field(str, "tpe"),  # or { name = ..., options }
    "pruner": Field(str, "median"),  # or { name = ..., options }
    "seed": Field(int, 0, non_negative),
    "baseline": Field(bool, True),
    "repeats": Field(int, 0, non_negative),  # re-run each width's best trial over k seeds
    "fuse": Field(object, 1, count_or_auto),  # trials of one width trained as one model
    "jobs": Field(object, 1, count_or_auto),  # trials trained at the same time (processes)
    "plugins": Field("strings", ()),
    "results": Field(str, "results"),
    "storage": Field(str, None),
    "tracking_uri": Field(str, None),
    "device": Field(str, "auto"),
    "keep": Field(str, "front", one_of(KEEP)),
    "register": Field(str, None, registered_model_name),
}
TRAIN_FIELDS = {
    "epochs": Field(int, TrainSettings.epochs, positive),
    "batch_size": Field(int, TrainSettings.batch_size, positive),
    "lr": Field(float, TrainSettings.lr, positive),
    "momentum": Field(float, TrainSettings.momentum, fraction),
    "weight_decay": Field(float, TrainSettings.weight_decay, non_negative),
    "optimizer": Field(str, TrainSettings.optimizer, one_of(OPTIMIZERS)),
    "seed": Field(int, TrainSettings.seed, non_negative),
    "warmup_epochs": Field(int, TrainSettings.warmup_epochs, non_negative),
    "augment": Field(str, TrainSettings.augment, one_of(AUGMENTATIONS)),
    "crop_padding": Field(int, TrainSettings.crop_padding, non_negative),
    "precision": Field(str, TrainSettings.precision, one_of(PRECISIONS)),
    "memory_format": Field(str, TrainSettings.memory_format, one_of(MEMORY_FORMATS)),
    "compile": Field(bool, TrainSettings.compile),
}
WEIGHT_FIELD = Field(float, 1.0, non_negative)  # of a loss term added to the main loss
MODEL_FIELDS = {"model": Field(str), "width": Field("number", None, positive)}  # model: a default
TEACHER_FIELDS = {**MODEL_FIELDS, "weights": Field(str, None)}  # weights: a local state dict
TEACHER_DEFAULTS = {"width": 32, "epochs": 30}
STUDENT_DEFAULTS = {"width": 8}


@dataclass(frozen=True)
class Where:
    """A place in a study file, for error messages."""

    path: Path
    section: str
    key: str | None = None

    def fail(self, message: str, value: Any = ...) -> ConfigError:
        place = f"[{self.section}]" + (f" {self.key}" if self.key else "")
        shown = "" if value is ... else f" = {value!r}"
        return ConfigError(f"{self.path}: {place}{shown}: {message}")


def check_value(value: Any, spec: Field, where: Where) -> Any:
    """``value`` checked against ``spec`` (ints widen to float); an error at ``where``."""
    kind = spec.kind
    if kind == "strings":
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise where.fail("expected a list of strings", value)
        return tuple(value)
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float or kind == "number":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        ok = ok and math.isfinite(value)
    else:
        ok = isinstance(value, kind)
    if not ok:
        expected = {"number": "a number", float: "a number"}.get(
            kind, getattr(kind, "__name__", kind)
        )
        raise where.fail(f"expected {expected}", value)
    if kind is float:
        value = float(value)
    complaint = spec.check(value) if spec.check else None
    if complaint:
        raise where.fail(complaint, value)
    return value


def field_for_param(component: Component, key: str) -> Field:
    """The field of a plugin-declared param: typed like its default, checked against the
    range its plugin declared (if any)."""
    default = component.params[key]
    kind = type(default)
    allowed = component.ranges.get(key)

    def within(value: Any) -> str | None:
        if allowed is None or value in allowed:
            return None
        return f"outside the range {allowed} of {component.kind} '{component.name}'"

    return Field(float if kind is float else kind, default, within)


def known_component(registry: Registry, kind: str, name: Any, where: Where) -> Component:
    """The registered component, or an error at ``where`` listing the known names."""
    try:
        return registry.get(kind, name)
    except UnknownComponentError as exc:
        raise where.fail(str(exc), name) from None
