"""The validated study: its ``[study]`` settings, the settings tree and the search space.

A :class:`Study` is frozen and fully checked against the registry; :meth:`Study.resolve`
turns it (with a trial's sampled values) into the :class:`TrialSettings` that training
consumes.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from kdsweep.plugin.registry import Registry
from kdsweep.study.goals import DEFAULT_GOALS, Constraint, Goal
from kdsweep.study.settings import ComponentChoice, ModelChoice, TrainSettings, TrialSettings
from kdsweep.study.space import WIDTH, Dimension


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
    jobs: int | str = 1  # trial-training processes, or "auto"
    plugins: tuple[str, ...] = ()
    results: str = "results"
    storage: str | None = None
    tracking_uri: str | None = None
    device: str = "auto"
    keep: str = "front"  # students kept as MLflow logged models (schema.KEEP)
    register: str | None = None  # Model Registry name of the best student, if any

    def metrics_used(self) -> list[str]:
        """The metrics the objectives and constraints read."""
        return [g.metric for g in self.objectives] + [c.metric for c in self.constraints]


@dataclass(frozen=True)
class Study:
    """A validated study: its settings, the settings tree and the search space.

    :param extra_plugins: local plugin modules it was loaded with besides ``[study]
        plugins`` (from the command line); processes that load it again need them.
    """

    path: Path
    settings: StudySettings
    tree: Mapping[str, Any]
    search: tuple[Dimension, ...]
    registry: Registry
    extra_plugins: tuple[str, ...] = ()

    def resolve(self, overrides: Mapping[str, Any] | None = None) -> TrialSettings:
        """The trial's settings: the study file's values with ``overrides`` (path -> value)."""
        tree = copy.deepcopy(dict(self.tree))
        for path, value in (overrides or {}).items():
            section, *rest = path.split(".")
            node = tree[section]
            if section == "schedule":  # schedule.<target>.<key>; a target may hold dots
                rest = [".".join(rest[:-1]), rest[-1]]
            for key in rest[:-1]:
                node = node.setdefault(key, {})  # e.g. a searched schedule the file leaves unset
            node[rest[-1]] = value
        return _trial_settings(tree, self.registry)

    def widths(self) -> list[float]:
        """Every student width the study can reach (the searched choices, or the fixed one)."""
        dim = self.dimension(WIDTH)
        if dim is None:
            return [self.tree["student"]["width"]]
        return sorted(set(dim.choices)) if dim.kind == "categorical" else []

    def width_of(self, params: Mapping[str, Any]) -> float:
        """The student width of a trial with these searched ``params``."""
        return params.get(WIDTH, self.tree["student"]["width"])

    def dimension(self, path: str) -> Dimension | None:
        """The searched dimension of ``path``, if the study searches it."""
        return next((dim for dim in self.search if dim.path == path), None)

    def loss_names(self) -> list[str]:
        """Every main loss a trial may use: the searched choices, or the fixed one."""
        dim = self.dimension("loss.name")
        return list(dim.choices) if dim is not None else [self.tree["loss"]["name"]]


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
