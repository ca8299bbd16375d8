"""The search space: ``[search]`` entries -> :class:`Dimension` per searched setting.

Keys are dotted paths into the study file (``loss.temperature``) or bare names when
exactly one searchable path ends with them (``temperature``). The setting's type decides
the distribution.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdsweep.plugin.registry import Registry
from kdsweep.study.schema import (
    MODEL_FIELDS,
    SCHEDULE_TARGETS,
    TRAIN_FIELDS,
    WEIGHT_FIELD,
    Field,
    Where,
    check_value,
    field_for_param,
    known_component,
    positive,
)
from kdsweep.text import did_you_mean

WIDTH = "student.width"  # the searched path that sets the student's size
SEARCHABLE_SECTIONS = ("student", "train", "loss", "schedule")
SEARCH_ALIASES = {"loss": "loss.name", "student": "student.model"}  # bare names for choices


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


def parse_search_space(
    path: Path, registry: Registry, search_raw: Mapping[str, Any], tree: Mapping[str, Any]
) -> tuple[Dimension, ...]:
    """Validate ``[search]`` against the settings ``tree`` of a study file."""
    return tuple(_SpaceParser(path, registry).parse(search_raw, tree))


class _SpaceParser:
    def __init__(self, path: Path, registry: Registry) -> None:
        self.path = path
        self.registry = registry

    def _searchable_fields(
        self, tree: Mapping[str, Any], search_raw: Mapping[str, Any]
    ) -> dict[str, Field]:
        """Every searchable path with its field, given the component choices in play."""
        found: dict[str, Field] = {
            "student.model": Field(str),
            WIDTH: MODEL_FIELDS["width"],
        }
        found.update({f"train.{key}": spec for key, spec in TRAIN_FIELDS.items()})
        found["loss.name"] = Field(str)
        for name in self._possible_names(tree["loss"]["name"], search_raw, "loss.name", "loss"):
            if name not in self.registry.names("loss"):
                continue  # reported when the choices are checked
            loss = self.registry.get("loss", name)
            for key in loss.params:
                found.setdefault(f"loss.{key}", field_for_param(loss, key))
        for name in tree["loss"]["add"]:
            found[f"loss.add.{name}.weight"] = WEIGHT_FIELD
            term = self.registry.get("loss", name)
            for key in term.params:
                found[f"loss.add.{name}.{key}"] = field_for_param(term, key)
        for target in dict.fromkeys([*SCHEDULE_TARGETS, *tree["schedule"]]):
            path = f"schedule.{target}.name"
            found[path] = Field(str)
            fixed = tree["schedule"].get(target, {}).get("name")
            for name in self._possible_names(fixed, search_raw, path, None):
                if name not in self.registry.names("schedule"):
                    continue
                schedule = self.registry.get("schedule", name)
                for key in schedule.params:
                    found.setdefault(f"schedule.{target}.{key}", field_for_param(schedule, key))
        return found

    @staticmethod
    def _possible_names(
        fixed: str | None, search_raw: Mapping[str, Any], path: str, alias: str | None
    ) -> list[str]:
        for key in (path, alias):
            spec = search_raw.get(key) if key else None
            if isinstance(spec, dict) and isinstance(spec.get("choices"), list):
                return [c for c in spec["choices"] if isinstance(c, str)] or [fixed or ""]
        return [fixed or ""]

    def parse(self, search_raw: Mapping[str, Any], tree: Mapping[str, Any]) -> list[Dimension]:
        searchable = self._searchable_fields(tree, search_raw)
        dims: dict[str, Dimension] = {}
        for key, spec in search_raw.items():
            where = Where(self.path, "search", key)
            path = self._search_path(key, searchable, where)
            if path in dims:
                raise where.fail(f"'{path}' is searched twice")
            dims[path] = self._dimension(path, searchable[path], spec, where)
        return list(dims.values())

    def _search_path(self, key: str, searchable: Mapping[str, Field], where: Where) -> str:
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

    def _dimension(self, path: str, field_: Field, spec: Any, where: Where) -> Dimension:
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
        low = check_value(low, bound, Where(where.path, where.section, f"{where.key}.low"))
        high = check_value(high, bound, Where(where.path, where.section, f"{where.key}.high"))
        if not isinstance(log, bool):
            raise where.fail("log must be true or false", log)
        if low >= high:
            raise where.fail(f"empty or inverted range: low ({low}) must be below high ({high})")
        if log and low <= 0:
            raise where.fail(f"log scale needs low > 0, got low = {low}")
        if step is not None:
            step = check_value(
                step,
                Field(int if integer else float, check=positive),
                Where(where.path, where.section, f"{where.key}.step"),
            )
            if log:
                raise where.fail("step and log cannot be combined")
        return Dimension(path, "int" if integer else "float", low, high, log, step)

    def _categorical(self, path: str, field_: Field, choices: Any, where: Where) -> Dimension:
        if not isinstance(choices, list) or not choices:
            raise where.fail("choices must be a non-empty list", choices)
        kind = {"loss.name": "loss", "student.model": "student"}.get(path)
        if path.startswith("schedule.") and path.endswith(".name"):
            kind = "schedule"
        checked = []
        for choice in choices:
            choice_where = Where(where.path, where.section, f"{where.key}.choices")
            value = check_value(choice, field_, choice_where)
            if kind:
                known_component(self.registry, kind, value, choice_where)
            checked.append(value)
        if len(set(map(repr, checked))) != len(checked):
            raise where.fail("choices repeat a value", choices)
        return Dimension(path, "categorical", choices=tuple(checked))
