"""Study file -> validated :class:`Study`. Every error is raised here, before any training.

A study file is TOML with the sections ``[study]``, ``[data]``, ``[teacher]``,
``[student]``, ``[train]``, ``[loss]``, ``[schedule]`` and ``[search]``. Settings are
addressed by dotted paths (``loss.temperature``, ``student.width``, ``train.lr``); a
search key may also be a bare name when exactly one searchable path ends with it.
"""

from __future__ import annotations

import copy
import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from kdsweep.errors import ConfigError, UnknownComponentError
from kdsweep.registry import Registry
from kdsweep.settings import (
    ComponentChoice,
    ModelChoice,
    TrainSettings,
    TrialSettings,
)
from kdsweep.suggest import did_you_mean

SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "none")
OPTIMIZERS = ("sgd", "adam", "adamw")
SEARCHABLE_SECTIONS = ("student", "train", "loss", "schedule")
SEARCH_ALIASES = {"loss": "loss.name", "student": "student.model"}  # bare names for choices

Check = Callable[[Any], str | None]  # returns a complaint, or None when the value is fine


def _positive(value: Any) -> str | None:
    return None if value > 0 else "must be > 0"


def _non_negative(value: Any) -> str | None:
    return None if value >= 0 else "must be >= 0"


def _fraction(value: Any) -> str | None:
    return None if 0 <= value < 1 else "must be in [0, 1)"


def _one_of(options: tuple[str, ...]) -> Check:
    return lambda value: None if value in options else f"must be one of {', '.join(options)}"


@dataclass(frozen=True)
class Field:
    """The type (``int``, ``float``, ``str``, ``bool``, ``"number"`` or ``"strings"``),
    default and check of one setting."""

    kind: Any
    default: Any = None
    check: Check | None = None


STUDY_FIELDS = {
    "name": Field(str),
    "n_trials": Field(int, 20, _positive),
    "timeout": Field(float, None, _positive),  # seconds
    "sampler": Field(str, "tpe", _one_of(SAMPLERS)),
    "pruner": Field(str, "median", _one_of(PRUNERS)),
    "seed": Field(int, 0),
    "baseline": Field(bool, True),
    "plugins": Field("strings", ()),
    "results": Field(str, "results"),
    "storage": Field(str, None),
    "tracking_uri": Field(str, None),
    "device": Field(str, "auto"),
}
TRAIN_FIELDS = {
    "epochs": Field(int, TrainSettings.epochs, _positive),
    "batch_size": Field(int, TrainSettings.batch_size, _positive),
    "lr": Field(float, TrainSettings.lr, _positive),
    "momentum": Field(float, TrainSettings.momentum, _fraction),
    "weight_decay": Field(float, TrainSettings.weight_decay, _non_negative),
    "optimizer": Field(str, TrainSettings.optimizer, _one_of(OPTIMIZERS)),
    "seed": Field(int, TrainSettings.seed),
}
MODEL_FIELDS = {"model": Field(str, "cnn"), "width": Field("number", None, _positive)}
TEACHER_DEFAULTS = {"width": 32, "epochs": 30}
STUDENT_DEFAULTS = {"width": 8}


@dataclass(frozen=True)
class Dimension:
    """One searched setting: a float or int range, or a list of choices."""

    path: str
    kind: str  # "float" | "int" | "categorical"
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()


@dataclass(frozen=True)
class StudySettings:
    """The ``[study]`` section."""

    name: str
    n_trials: int = 20
    timeout: float | None = None
    sampler: str = "tpe"
    pruner: str = "median"
    seed: int = 0
    baseline: bool = True
    plugins: tuple[str, ...] = ()
    results: str = "results"
    storage: str | None = None
    tracking_uri: str | None = None
    device: str = "auto"


@dataclass(frozen=True)
class Study:
    """A validated study: its settings, the settings tree and the search space."""

    path: Path
    settings: StudySettings
    tree: Mapping[str, Any]
    search: tuple[Dimension, ...]
    registry: Registry

    def resolve(self, overrides: Mapping[str, Any] | None = None) -> TrialSettings:
        """The trial's settings: the study file's values with ``overrides`` (path -> value)."""
        tree = copy.deepcopy(dict(self.tree))
        for path, value in (overrides or {}).items():
            section, *rest = path.split(".")
            node = tree[section]
            for key in rest[:-1]:
                node = node[key]
            node[rest[-1]] = value
        return _trial_settings(tree, self.registry)

    def widths(self) -> list[float]:
        """Every student width the study can reach (the searched choices, or the fixed one)."""
        for dim in self.search:
            if dim.path == "student.width":
                if dim.kind == "categorical":
                    return sorted(set(dim.choices))
                return []  # a range: widths are found as trials run
        return [self.tree["student"]["width"]]


def read_study_file(path: str | Path) -> dict[str, Any]:
    """Parse the TOML of a study file; a clear error for a missing or malformed file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read study file: {exc.strerror or exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def study_plugins(raw: Mapping[str, Any], path: Path) -> tuple[str, ...]:
    """The local plugin modules named in ``[study] plugins`` (needed before validation)."""
    value = raw.get("study", {}).get("plugins", ()) if isinstance(raw.get("study"), dict) else ()
    return _check_value(value, STUDY_FIELDS["plugins"], _Where(path, "study", "plugins"))


def load_study(path: str | Path, registry: Registry, raw: Mapping[str, Any] | None = None) -> Study:
    """Validate a study file against the registry: every error before any training."""
    path = Path(path)
    raw = read_study_file(path) if raw is None else raw
    return _Validator(path, registry).study(raw)


@dataclass(frozen=True)
class _Where:
    path: Path
    section: str
    key: str | None = None

    def fail(self, message: str, value: Any = ...) -> ConfigError:
        place = f"[{self.section}]" + (f" {self.key}" if self.key else "")
        shown = "" if value is ... else f" = {value!r}"
        return ConfigError(f"{self.path}: {place}{shown}: {message}")


def _check_value(value: Any, spec: Field, where: _Where) -> Any:
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


def _field_for_default(default: Any) -> Field:
    kind = type(default)
    return Field(float if kind is float else kind, default)


class _Validator:
    """Walks a parsed study file, filling defaults and collecting the search space."""

    def __init__(self, path: Path, registry: Registry) -> None:
        self.path = path
        self.registry = registry

    def study(self, raw: Mapping[str, Any]) -> Study:
        sections = {
            "study",
            "data",
            "teacher",
            "student",
            "train",
            "loss",
            "schedule",
            "search",
        }
        for name, value in raw.items():
            if name not in sections:
                raise _Where(self.path, name).fail(
                    f"unknown section{did_you_mean(name, sections)} "
                    f"(sections: {', '.join(sorted(sections))})"
                )
            if not isinstance(value, dict):
                raise _Where(self.path, name).fail("expected a table", value)
        if "name" not in raw.get("study", {}):
            raise _Where(self.path, "study", "name").fail("missing: every study needs a name")
        settings = StudySettings(**self._fixed(raw, "study", STUDY_FIELDS))
        tree = {
            "data": self._data(raw.get("data", {})),
            "teacher": self._model(raw, "teacher", TEACHER_DEFAULTS, TRAIN_FIELDS),
            "student": self._model(raw, "student", STUDENT_DEFAULTS, {}),
            "train": self._fixed(raw, "train", TRAIN_FIELDS),
            "loss": self._component(
                raw.get("loss", {}), "loss", "name", "kd", _Where(self.path, "loss")
            ),
            "schedule": self._schedules(raw.get("schedule", {})),
        }
        search = tuple(self._search(raw.get("search", {}), tree))
        return Study(self.path, settings, tree, search, self.registry)

    def _fixed(
        self,
        raw: Mapping[str, Any],
        section: str,
        spec: Mapping[str, Field],
        defaults: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        given = raw.get(section, {})
        for key in given:
            if key not in spec:
                raise _Where(self.path, section, key).fail(
                    f"unknown key{did_you_mean(key, spec)} (known: {', '.join(spec)})"
                )
        values = {}
        for key, field_ in spec.items():
            default = (defaults or {}).get(key, field_.default)
            value = given.get(key, default)
            values[key] = (
                None
                if value is None
                else _check_value(value, field_, _Where(self.path, section, key))
            )
        return values

    def _data(self, given: Mapping[str, Any]) -> dict[str, Any]:
        return self._component(given, "dataset", "dataset", "digits", _Where(self.path, "data"))

    def _model(
        self,
        raw: Mapping[str, Any],
        section: str,
        defaults: Mapping[str, Any],
        train_fields: Mapping[str, Field],
    ) -> dict[str, Any]:
        spec = {**MODEL_FIELDS, **train_fields}
        values = self._fixed(raw, section, spec, defaults)
        self._known(section, values["model"], _Where(self.path, section, "model"))
        return values

    def _known(self, kind: str, name: Any, where: _Where) -> Any:
        try:
            return self.registry.get(kind, name)
        except UnknownComponentError as exc:
            raise where.fail(str(exc), name) from None

    def _component(
        self,
        given: Mapping[str, Any],
        kind: str,
        name_key: str,
        default: str,
        where: _Where,
    ) -> dict[str, Any]:
        """A component table: its name under ``name_key`` plus its declared params."""
        name = _check_value(
            given.get(name_key, default),
            Field(str),
            _Where(where.path, where.section, _join(where.key, name_key)),
        )
        component = self._known(
            kind, name, _Where(where.path, where.section, _join(where.key, name_key))
        )
        values = {name_key: name}
        for key, value in given.items():
            if key == name_key:
                continue
            key_where = _Where(where.path, where.section, _join(where.key, key))
            if key not in component.params:
                declared = ", ".join(component.params) or "none"
                raise key_where.fail(
                    f"{kind} '{name}' has no param '{key}'{did_you_mean(key, component.params)}"
                    f" (its params: {declared})"
                )
            values[key] = _check_value(value, _field_for_default(component.params[key]), key_where)
        return values

    def _schedules(self, given: Mapping[str, Any]) -> dict[str, Any]:
        targets = ("temperature",)
        schedules = {}
        for key in given:
            if key not in targets:
                raise _Where(self.path, "schedule", key).fail(
                    f"unknown key{did_you_mean(key, targets)} (schedulable: {', '.join(targets)})"
                )
        for target in targets:
            value = given.get(target, "constant")
            table = {"name": value} if isinstance(value, str) else value
            if not isinstance(table, dict):
                raise _Where(self.path, "schedule", target).fail(
                    "expected a schedule name or a table with 'name' and params", value
                )
            schedules[target] = self._component(
                table, "schedule", "name", "constant", _Where(self.path, "schedule", target)
            )
        return schedules

    # -- search space ------------------------------------------------------------------

    def _searchable_fields(
        self, tree: Mapping[str, Any], search_raw: Mapping[str, Any]
    ) -> dict[str, Field]:
        """Every searchable path with its field, given the component choices in play."""
        found: dict[str, Field] = {
            "student.model": Field(str),
            "student.width": MODEL_FIELDS["width"],
        }
        found.update({f"train.{key}": spec for key, spec in TRAIN_FIELDS.items()})
        found["loss.name"] = Field(str)
        for name in self._possible_names(tree["loss"]["name"], search_raw, "loss.name", "loss"):
            if name not in self.registry.names("loss"):
                continue  # reported when the choices are checked
            for key, default in self.registry.get("loss", name).params.items():
                found.setdefault(f"loss.{key}", _field_for_default(default))
        for target, table in tree["schedule"].items():
            found[f"schedule.{target}.name"] = Field(str)
            path = f"schedule.{target}.name"
            for name in self._possible_names(table["name"], search_raw, path, None):
                if name not in self.registry.names("schedule"):
                    continue
                for key, default in self.registry.get("schedule", name).params.items():
                    found.setdefault(f"schedule.{target}.{key}", _field_for_default(default))
        return found

    @staticmethod
    def _possible_names(
        fixed: str, search_raw: Mapping[str, Any], path: str, alias: str | None
    ) -> list[str]:
        for key in (path, alias):
            spec = search_raw.get(key) if key else None
            if isinstance(spec, dict) and isinstance(spec.get("choices"), list):
                return [c for c in spec["choices"] if isinstance(c, str)] or [fixed]
        return [fixed]

    def _search(self, search_raw: Mapping[str, Any], tree: Mapping[str, Any]) -> list[Dimension]:
        searchable = self._searchable_fields(tree, search_raw)
        dims: dict[str, Dimension] = {}
        for key, spec in search_raw.items():
            where = _Where(self.path, "search", key)
            path = self._search_path(key, searchable, where)
            if path in dims:
                raise where.fail(f"'{path}' is searched twice")
            dims[path] = self._dimension(path, searchable[path], spec, where)
        return list(dims.values())

    def _search_path(self, key: str, searchable: Mapping[str, Field], where: _Where) -> str:
        if key in searchable:
            return key
        if key in SEARCH_ALIASES:
            return SEARCH_ALIASES[key]
        matches = [path for path in searchable if path.rsplit(".", 1)[-1] == key]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise where.fail(f"ambiguous: name one of {', '.join(matches)}")
        section = key.split(".", 1)[0]
        if "." in key and section not in SEARCHABLE_SECTIONS:
            raise where.fail(
                f"[{section}] settings are not searchable (searchable sections: "
                f"{', '.join(SEARCHABLE_SECTIONS)})"
            )
        names = list(searchable) + [p.rsplit(".", 1)[-1] for p in searchable]
        raise where.fail(
            f"unknown setting{did_you_mean(key, names)} (searchable: {', '.join(searchable)})"
        )

    def _dimension(self, path: str, field_: Field, spec: Any, where: _Where) -> Dimension:
        if not isinstance(spec, dict):
            raise where.fail(
                "expected a table such as {low = 1, high = 10} or {choices = [...]}", spec
            )
        allowed = {"choices"} if "choices" in spec else {"low", "high", "log", "step"}
        for key in spec:
            if key not in allowed:
                raise where.fail(
                    f"unknown range key '{key}'{did_you_mean(key, allowed)} "
                    "(use low/high with optional log or step, or choices alone)"
                )
        if "choices" in spec:
            return self._categorical(path, field_, spec["choices"], where)
        if field_.kind not in (int, float, "number"):
            raise where.fail(f"'{path}' is not numeric: search it with choices = [...]")
        if "low" not in spec or "high" not in spec:
            raise where.fail("a range needs both low and high")
        low, high = spec["low"], spec["high"]
        log = spec.get("log", False)
        step = spec.get("step")
        integer = field_.kind is int or (
            field_.kind == "number"
            and all(isinstance(v, int) for v in (low, high) if v is not None)
            and (step is None or isinstance(step, int))
        )
        bound = Field(int if integer else float, check=field_.check)
        low = _check_value(low, bound, _Where(where.path, where.section, f"{where.key}.low"))
        high = _check_value(high, bound, _Where(where.path, where.section, f"{where.key}.high"))
        if not isinstance(log, bool):
            raise where.fail("log must be true or false", log)
        if low >= high:
            raise where.fail(f"empty or inverted range: low ({low}) must be below high ({high})")
        if log and low <= 0:
            raise where.fail(f"log scale needs low > 0, got low = {low}")
        if step is not None:
            step = _check_value(
                step,
                Field(int if integer else float, check=_positive),
                _Where(where.path, where.section, f"{where.key}.step"),
            )
            if log:
                raise where.fail("step and log cannot be combined")
        return Dimension(path, "int" if integer else "float", low, high, log, step)

    def _categorical(self, path: str, field_: Field, choices: Any, where: _Where) -> Dimension:
        if not isinstance(choices, list) or not choices:
            raise where.fail("choices must be a non-empty list", choices)
        kind = {"loss.name": "loss", "student.model": "student"}.get(path)
        if path.startswith("schedule.") and path.endswith(".name"):
            kind = "schedule"
        checked = []
        for choice in choices:
            choice_where = _Where(where.path, where.section, f"{where.key}.choices")
            value = _check_value(choice, field_, choice_where)
            if kind:
                self._known(kind, value, choice_where)
            checked.append(value)
        if len(set(map(repr, checked))) != len(checked):
            raise where.fail("choices repeat a value", choices)
        return Dimension(path, "categorical", choices=tuple(checked))


def _join(prefix: str | None, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _trial_settings(tree: Mapping[str, Any], registry: Registry) -> TrialSettings:
    train_keys = {f.name for f in fields(TrainSettings)}
    teacher = tree["teacher"]
    return TrialSettings(
        dataset=_choice(
            tree["data"], "dataset", registry.get("dataset", tree["data"]["dataset"]).params
        ),
        teacher=ModelChoice(teacher["model"], teacher["width"]),
        teacher_train=TrainSettings(**{k: v for k, v in teacher.items() if k in train_keys}),
        student=ModelChoice(tree["student"]["model"], tree["student"]["width"]),
        train=TrainSettings(**tree["train"]),
        loss=_choice(tree["loss"], "name", registry.get("loss", tree["loss"]["name"]).params),
        temperature_schedule=_choice(
            tree["schedule"]["temperature"],
            "name",
            registry.get("schedule", tree["schedule"]["temperature"]["name"]).params,
        ),
    )


def _choice(
    table: Mapping[str, Any], name_key: str, declared: Mapping[str, Any]
) -> ComponentChoice:
    params = {key: table.get(key, default) for key, default in declared.items()}
    return ComponentChoice(table[name_key], params)
