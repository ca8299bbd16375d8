"""Study file -> validated :class:`~kdsweep.study.study.Study`: every error that the file
and the registry can show is raised here, before any training.

A study file is TOML with the sections ``[study]``, ``[data]``, ``[teacher]``,
``[student]``, ``[train]``, ``[loss]``, ``[schedule]`` and ``[search]``. Settings are
addressed by dotted paths (``loss.temperature``, ``student.width``, ``train.lr``); a
search key may also be a bare name when exactly one searchable path ends with it.
Components a study does not name are the registry's defaults; a value without a
schedule stays as set.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kdsweep.errors import UnknownComponentError
from kdsweep.plugin.registry import Registry, Training
from kdsweep.study.goals import GoalError, parse_constraints, parse_objectives
from kdsweep.study.schedule_values import check_schedule_values
from kdsweep.study.schema import (
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
    field_for_param,
    known_component,
)
from kdsweep.study.space import parse_search_space
from kdsweep.study.study import Study, StudySettings
from kdsweep.text import did_you_mean

SECTIONS = ("study", "data", "teacher", "student", "train", "loss", "schedule", "search")


def validate_study(path: Path, raw: Mapping[str, Any], registry: Registry) -> Study:
    """Validate a parsed study file against the registry: every error before any training."""
    return _Validator(Path(path), registry).study(raw)


class _Validator:
    """Walks a parsed study file, filling defaults and collecting the search space."""

    def __init__(self, path: Path, registry: Registry) -> None:
        self.path = path
        self.registry = registry

    def study(self, raw: Mapping[str, Any]) -> Study:
        for name, value in raw.items():
            if name not in SECTIONS:
                raise Where(self.path, name).fail(
                    f"unknown section{did_you_mean(name, SECTIONS)} "
                    f"(sections: {', '.join(sorted(SECTIONS))})"
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
        if "kd_gain" in settings.metrics_used() and not settings.baseline:
            raise Where(self.path, "study", "objectives").fail(
                "kd_gain (in objectives or constraints) needs baseline = true"
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
                **self._component(loss_raw, "loss", "name", None, Where(self.path, "loss")),
                "add": added_losses,
            },
        }
        tree["schedule"] = self._schedules(raw.get("schedule", {}), tree)
        search = parse_search_space(self.path, self.registry, raw.get("search", {}), tree)
        check_schedule_values(Where(self.path, "schedule"), self.registry, tree, search)
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
        return self._component(given, "dataset", "dataset", None, Where(self.path, "data"))

    def _model(
        self,
        raw: Mapping[str, Any],
        section: str,
        defaults: Mapping[str, Any],
        spec: Mapping[str, Field],
    ) -> dict[str, Any]:
        values = self._fixed(raw, section, spec, defaults)
        kind = section.split(".")[0]
        where = Where(self.path, section, "model")
        if values["model"] is None:
            values["model"] = self._default(kind, where)
        self._known_component(kind, values["model"], where)
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
            if self.registry.get("loss", name).training is not Training.STANDARD:
                raise where.fail(
                    f"loss '{name}' trains several models and cannot be added as a term"
                )
            added[name] = {"weight": weight, **{k: v for k, v in values.items() if k != "name"}}
        return added

    def _known_component(self, kind: str, name: Any, where: Where) -> Any:
        return known_component(self.registry, kind, name, where)

    def _default(self, kind: str, where: Where) -> str:
        """The registry's default component of ``kind``, or an error at ``where``."""
        try:
            return self.registry.default(kind)
        except UnknownComponentError as exc:
            raise where.fail(f"not set, and {exc}") from None

    def _component(
        self,
        given: Mapping[str, Any],
        kind: str,
        name_key: str,
        default: str | None,
        where: Where,
    ) -> dict[str, Any]:
        """A component table: its name under ``name_key`` (``default``, or the registry's
        default of ``kind`` when ``None``) plus its declared params."""
        name_where = Where(where.path, where.section, _join(where.key, name_key))
        if name_key not in given and default is None:
            default = self._default(kind, name_where)
        name = check_value(given.get(name_key, default), Field(str), name_where)
        component = self._known_component(kind, name, name_where)
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
            values[key] = check_value(value, field_for_param(component, key), key_where)
        return values

    def _schedules(self, given: Mapping[str, Any], tree: Mapping[str, Any]) -> dict[str, Any]:
        """The schedules set; a target without one keeps its value for every epoch."""
        targets = schedulable(self.registry, tree)
        schedules = {}
        for target, value in given.items():
            where = Where(self.path, "schedule", target)
            if target not in targets:
                raise where.fail(
                    f"unknown key{did_you_mean(target, targets)} "
                    f"(schedulable: {', '.join(targets)})"
                )
            table = {"name": value} if isinstance(value, str) else value
            if not isinstance(table, dict) or "name" not in table:
                raise where.fail(
                    "expected a schedule name or a table with 'name' and params", value
                )
            schedules[target] = self._component(table, "schedule", "name", None, where)
        return schedules


def schedulable(registry: Registry, tree: Mapping[str, Any]) -> list[str]:
    """What ``[schedule]`` may move: ``temperature``, ``alpha`` and ``lr``, any float
    param of the main loss as ``loss.<param>``, and an added term's float params and
    weight as ``loss.add.<term>.<param>`` and ``loss.add.<term>.weight``."""
    main = registry.get("loss", tree["loss"]["name"])
    targets = [*SCHEDULE_TARGETS, *(f"loss.{key}" for key in _float_params(main.params))]
    for name in tree["loss"]["add"]:
        term = registry.get("loss", name).params
        targets += [f"loss.add.{name}.{key}" for key in ("weight", *_float_params(term))]
    return targets


def _float_params(params: Mapping[str, Any]) -> list[str]:
    return [key for key, default in params.items() if isinstance(default, float)]


def _join(prefix: str | None, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key
