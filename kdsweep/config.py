"""Study file -> validated :class:`Study`. Every error is raised here, before any training.

A study file is TOML with the sections ``[study]``, ``[data]``, ``[teacher]``,
``[student]``, ``[train]``, ``[loss]``, ``[schedule]`` and ``[search]``. Settings are
addressed by dotted paths (``loss.temperature``, ``student.width``, ``train.lr``); a
search key may also be a bare name when exactly one searchable path ends with it.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from kdsweep.errors import ConfigError
from kdsweep.goals import (
    DEFAULT_GOALS,
    Constraint,
    Goal,
    GoalError,
    parse_constraints,
    parse_objectives,
)
from kdsweep.registry import Registry
from kdsweep.schema import (
    MODEL_FIELDS,
    SCHEDULE_TARGETS,
    STUDENT_DEFAULTS,
    STUDY_FIELDS,
    TEACHER_DEFAULTS,
    TEACHER_FIELDS,
    TRAIN_FIELDS,
    WEIGHT_FIELD,
    Field,
    Where,
    check_value,
    field_for_default,
    known_component,
)
from kdsweep.settings import ComponentChoice, ModelChoice, TrainSettings, TrialSettings
from kdsweep.space import Dimension, parse_search_space
from kdsweep.suggest import did_you_mean

__all__ = ["Dimension", "Study", "StudySettings", "load_study", "read_study_file"]


@dataclass(frozen=True)
class StudySettings:
    """The ``[study]`` section."""

    name: str
    n_trials: int = 20
    timeout: float | None = None
    sampler: str = "tpe"
    pruner: str = "median"
    sampler_options: Mapping[str, Any] = field(default_factory=dict)
    pruner_options: Mapping[str, Any] = field(default_factory=dict)
    objectives: tuple[Goal, ...] = DEFAULT_GOALS
    constraints: tuple[Constraint, ...] = ()
    seed: int = 0
    baseline: bool = True
    repeats: int = 0
    fuse: int | str = 1  # trials trained together as one batched model, or "auto"
    jobs: int | str = 1  # trials (or fused groups) trained at the same time, or "auto"
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
    return check_value(value, STUDY_FIELDS["plugins"], Where(path, "study", "plugins"))


def load_study(path: str | Path, registry: Registry, raw: Mapping[str, Any] | None = None) -> Study:
    """Validate a study file against the registry: every error before any training."""
    path = Path(path)
    raw = read_study_file(path) if raw is None else raw
    return _Validator(path, registry).study(raw)


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
                raise Where(self.path, name).fail(
                    f"unknown section{did_you_mean(name, sections)} "
                    f"(sections: {', '.join(sorted(sections))})"
                )
            if not isinstance(value, dict):
                raise Where(self.path, name).fail("expected a table", value)
        if "name" not in raw.get("study", {}):
            raise Where(self.path, "study", "name").fail("missing: every study needs a name")
        study_raw = dict(raw.get("study", {}))
        goals = self._goals(study_raw)
        choices = {kind: self._with_options(study_raw, kind) for kind in ("sampler", "pruner")}
        settings = StudySettings(
            **self._fixed({"study": study_raw}, "study", STUDY_FIELDS),
            **goals,
            sampler_options=choices["sampler"],
            pruner_options=choices["pruner"],
        )
        teacher_raw = dict(raw.get("teacher", {}))
        extra_teachers = self._extra_teachers(teacher_raw.pop("extra", []))
        loss_raw = dict(raw.get("loss", {}))
        added_losses = self._added_losses(loss_raw.pop("add", {}))
        tree = {
            "data": self._data(raw.get("data", {})),
            "teacher": {
                **self._model(
                    {"teacher": teacher_raw},
                    "teacher",
                    TEACHER_DEFAULTS,
                    {**TEACHER_FIELDS, **TRAIN_FIELDS},
                ),
                "extra": extra_teachers,
            },
            "student": self._model(raw, "student", STUDENT_DEFAULTS, MODEL_FIELDS),
            "train": self._fixed(raw, "train", TRAIN_FIELDS),
            "loss": {
                **self._component(loss_raw, "loss", "name", "kd", Where(self.path, "loss")),
                "add": added_losses,
            },
            "schedule": self._schedules(raw.get("schedule", {})),
        }
        search = parse_search_space(self.path, self.registry, raw.get("search", {}), tree)
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
                raise Where(self.path, section, key).fail(
                    f"unknown key{did_you_mean(key, spec)} (known: {', '.join(spec)})"
                )
        values = {}
        for key, field_ in spec.items():
            default = (defaults or {}).get(key, field_.default)
            value = given.get(key, default)
            values[key] = (
                None
                if value is None
                else check_value(value, field_, Where(self.path, section, key))
            )
        return values

    def _data(self, given: Mapping[str, Any]) -> dict[str, Any]:
        return self._component(given, "dataset", "dataset", "digits", Where(self.path, "data"))

    def _model(
        self,
        raw: Mapping[str, Any],
        section: str,
        defaults: Mapping[str, Any],
        spec: Mapping[str, Field],
    ) -> dict[str, Any]:
        values = self._fixed(raw, section, spec, defaults)
        kind = section.split(".")[0]
        self._known_component(kind, values["model"], Where(self.path, section, "model"))
        if values.get("weights") is not None:
            values["weights"] = self._existing_file(
                values["weights"], Where(self.path, section, "weights")
            )
        return values

    def _existing_file(self, name: str, where: Where) -> str:
        """An absolute path (relative ones resolve against the study file's folder)."""
        path = Path(name) if Path(name).is_absolute() else self.path.parent / name
        if not path.is_file():
            raise where.fail(f"file not found: {path.resolve()}", name)
        return str(path.resolve())

    def _goals(self, study_raw: dict[str, Any]) -> dict[str, Any]:
        """Pop and parse ``objectives`` and ``constraints``."""
        goals: dict[str, Any] = {}
        for key, parse in (("objectives", parse_objectives), ("constraints", parse_constraints)):
            if key in study_raw:
                value = study_raw.pop(key)
                try:
                    goals[key] = parse(value)
                except GoalError as exc:
                    raise Where(self.path, "study", key).fail(str(exc), value) from None
        return goals

    def _with_options(self, study_raw: dict[str, Any], kind: str) -> dict[str, Any]:
        """``sampler = { name = "nsga2", population_size = 20 }``: keep the name in place and
        return the options (checked against the sampler or pruner when the study opens)."""
        value = study_raw.get(kind)
        if not isinstance(value, dict):
            return {}
        options = dict(value)
        if "name" not in options:
            raise Where(self.path, "study", kind).fail("a table needs a name", value)
        study_raw[kind] = options.pop("name")
        for option, setting in options.items():
            if not isinstance(setting, bool | int | float | str | list):
                raise Where(self.path, "study", f"{kind}.{option}").fail(
                    "expected a number, string, boolean or list", setting
                )
        return options

    def _extra_teachers(self, given: Any) -> list[dict[str, Any]]:
        """``[teacher] extra = [{ model = "mlp", width = 64 }, ...]``: further teachers."""
        where = Where(self.path, "teacher", "extra")
        if not isinstance(given, list) or not all(isinstance(t, dict) for t in given):
            raise where.fail(
                'expected a list of tables such as { model = "mlp", width = 64 }', given
            )
        teachers = []
        for number, table in enumerate(given):
            section = f"teacher.extra.{number}"
            values = self._model({section: table}, section, {"width": None}, TEACHER_FIELDS)
            if values["width"] is None:
                raise Where(self.path, section, "width").fail("missing")
            teachers.append(values)
        return teachers

    def _added_losses(self, given: Any) -> dict[str, dict[str, Any]]:
        """``[loss.add.<name>]`` tables: terms added to the main loss, each with a weight."""
        if not isinstance(given, dict):
            raise Where(self.path, "loss", "add").fail("expected tables [loss.add.<loss>]", given)
        added = {}
        for name, table in given.items():
            where = Where(self.path, f"loss.add.{name}")
            if not isinstance(table, dict):
                raise where.fail("expected a table with weight and the loss's params", table)
            table = dict(table)
            weight = check_value(
                table.pop("weight", 1.0), WEIGHT_FIELD, Where(where.path, where.section, "weight")
            )
            values = self._component({"name": name, **table}, "loss", "name", name, where)
            if self.registry.get("loss", name).training != "standard":
                raise where.fail(
                    f"loss '{name}' trains several models and cannot be added as a term"
                )
            added[name] = {"weight": weight, **{k: v for k, v in values.items() if k != "name"}}
        return added

    def _known_component(self, kind: str, name: Any, where: Where) -> Any:
        return known_component(self.registry, kind, name, where)

    def _component(
        self,
        given: Mapping[str, Any],
        kind: str,
        name_key: str,
        default: str,
        where: Where,
    ) -> dict[str, Any]:
        """A component table: its name under ``name_key`` plus its declared params."""
        name = check_value(
            given.get(name_key, default),
            Field(str),
            Where(where.path, where.section, _join(where.key, name_key)),
        )
        component = self._known_component(
            kind, name, Where(where.path, where.section, _join(where.key, name_key))
        )
        values = {name_key: name}
        for key, value in given.items():
            if key == name_key:
                continue
            key_where = Where(where.path, where.section, _join(where.key, key))
            if key not in component.params:
                declared = ", ".join(component.params) or "none"
                raise key_where.fail(
                    f"{kind} '{name}' has no param '{key}'{did_you_mean(key, component.params)}"
                    f" (its params: {declared})"
                )
            values[key] = check_value(value, field_for_default(component.params[key]), key_where)
        return values

    def _schedules(self, given: Mapping[str, Any]) -> dict[str, Any]:
        targets = SCHEDULE_TARGETS
        schedules = {}
        for key in given:
            if key not in targets:
                raise Where(self.path, "schedule", key).fail(
                    f"unknown key{did_you_mean(key, targets)} (schedulable: {', '.join(targets)})"
                )
        for target in targets:
            value = given.get(target, "constant")
            table = {"name": value} if isinstance(value, str) else value
            if not isinstance(table, dict):
                raise Where(self.path, "schedule", target).fail(
                    "expected a schedule name or a table with 'name' and params", value
                )
            schedules[target] = self._component(
                table, "schedule", "name", "constant", Where(self.path, "schedule", target)
            )
        return schedules


def _join(prefix: str | None, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _trial_settings(tree: Mapping[str, Any], registry: Registry) -> TrialSettings:
    train_keys = {f.name for f in fields(TrainSettings)}
    teacher = tree["teacher"]
    loss_registry = {name: registry.get("loss", name).params for name in tree["loss"]["add"]}
    return TrialSettings(
        dataset=_choice(
            tree["data"], "dataset", registry.get("dataset", tree["data"]["dataset"]).params
        ),
        teacher=ModelChoice(teacher["model"], teacher["width"], teacher["weights"]),
        teacher_train=TrainSettings(**{k: v for k, v in teacher.items() if k in train_keys}),
        extra_teachers=tuple(
            ModelChoice(t["model"], t["width"], t["weights"]) for t in teacher["extra"]
        ),
        student=ModelChoice(tree["student"]["model"], tree["student"]["width"]),
        train=TrainSettings(**tree["train"]),
        loss=_choice(tree["loss"], "name", registry.get("loss", tree["loss"]["name"]).params),
        extra_losses=tuple(
            ComponentChoice(
                name,
                {key: table.get(key, default) for key, default in loss_registry[name].items()},
                table["weight"],
            )
            for name, table in tree["loss"]["add"].items()
        ),
        schedules={
            target: _choice(table, "name", registry.get("schedule", table["name"]).params)
            for target, table in tree["schedule"].items()
        },
    )


def _choice(
    table: Mapping[str, Any], name_key: str, declared: Mapping[str, Any]
) -> ComponentChoice:
    params = {key: table.get(key, default) for key, default in declared.items()}
    return ComponentChoice(table[name_key], params)
