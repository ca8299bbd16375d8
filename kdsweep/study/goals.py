"""What a study optimises: objectives and constraints over the metrics each trial records.

[study]
objectives = [{ metric = "val_accuracy", direction = "maximize" },
              { metric = "params", direction = "minimize" }]
constraints = ["params <= 50000"]
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Metrics a trial records that a study may optimise or constrain.
METRICS = (
    "val_accuracy",
    "params",
    "train_time_s",
    "flops",
    "latency_ms",
    "size_bytes",
    "kd_gain",
)
DIRECTIONS = ("maximize", "minimize")
_CONSTRAINT = re.compile(r"^\s*([a-z_]+)\s*(<=|>=)\s*([-+0-9.eE]+)\s*$")


class GoalError(ValueError):
    """An objective or constraint that cannot be used; the message says why."""


@dataclass(frozen=True)
class Goal:
    """One objective: a recorded metric and its direction."""

    metric: str
    direction: str


@dataclass(frozen=True)
class Constraint:
    """``metric <= bound`` or ``metric >= bound``."""

    metric: str
    operator: str
    bound: float

    def violation(self, metrics: Mapping[str, float]) -> float:
        """Optuna's convention: feasible when the value is 0 or less."""
        value = metrics[self.metric]
        return value - self.bound if self.operator == "<=" else self.bound - value

    def __str__(self) -> str:
        return f"{self.metric} {self.operator} {self.bound:g}"


DEFAULT_GOALS = (Goal("val_accuracy", "maximize"),)


def _check_metric(metric: Any) -> str:
    if metric == "test_accuracy":
        raise GoalError(
            "test_accuracy cannot be an objective: choose on validation data, "
            "test accuracy is reported separately"
        )
    if metric not in METRICS:
        raise GoalError(f"unknown metric {metric!r} (metrics: {', '.join(METRICS)})")
    return metric


def parse_objectives(raw: Any) -> tuple[Goal, ...]:
    """``[{metric, direction}, ...]`` -> goals; the first is the primary objective."""
    if not isinstance(raw, list) or not raw:
        raise GoalError("expected a non-empty list of { metric = ..., direction = ... }")
    goals = []
    for entry in raw:
        if not isinstance(entry, dict) or set(entry) - {"metric", "direction"}:
            raise GoalError(f"expected {{ metric = ..., direction = ... }}, got {entry!r}")
        metric = _check_metric(entry.get("metric"))
        direction = entry.get(
            "direction", "maximize" if metric in ("val_accuracy", "kd_gain") else "minimize"
        )
        if direction not in DIRECTIONS:
            raise GoalError(
                f"direction of {metric} must be maximize or minimize, got {direction!r}"
            )
        goals.append(Goal(metric, direction))
    if len({goal.metric for goal in goals}) != len(goals):
        raise GoalError("an objective metric is listed twice")
    return tuple(goals)


def parse_constraints(raw: Any) -> tuple[Constraint, ...]:
    """``["params <= 50000", ...]`` -> constraints."""
    if not isinstance(raw, list):
        raise GoalError('expected a list such as ["params <= 50000"]')
    constraints = []
    for text in raw:
        match = _CONSTRAINT.match(text) if isinstance(text, str) else None
        if match is None:
            raise GoalError(f"expected 'metric <= number' or 'metric >= number', got {text!r}")
        metric, operator, bound = match.groups()
        try:
            constraints.append(Constraint(_check_metric(metric), operator, float(bound)))
        except ValueError as exc:
            raise GoalError(
                str(exc) if isinstance(exc, GoalError) else f"bad number {bound!r}"
            ) from None
    return tuple(constraints)
