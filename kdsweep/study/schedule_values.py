"""The values a schedule moves a param to, checked before training: a schedule whose
floor (or any param) takes the temperature to 0 or below, alpha out of [0, 1] or the
learning rate below 0 would fail (or mislead) every trial after the teacher has trained.

Each schedule is evaluated at every epoch for the extremes of what the study may use: the
fixed or searched base value, the schedule's fixed or searched params, the epochs.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

from kdsweep.plugin.ranges import Range
from kdsweep.plugin.registry import Registry
from kdsweep.study.schema import SCHEDULE_TARGETS, Where
from kdsweep.study.space import Dimension

# The learning rate: a schedule may end at 0 (cosine annealing does), never below.
LEARNING_RATE = Range(0.0, math.inf, high_open=True)
WEIGHT = Range(0.0, math.inf, high_open=True)  # of an added loss term
MAX_CORNERS = 512  # combinations of extremes evaluated per schedule


def check_schedule_values(
    where: Where, registry: Registry, tree: Mapping[str, Any], search: Sequence[Dimension]
) -> None:
    """Every value each schedule can take stays in its target's allowed range."""
    dims = {dim.path: dim for dim in search}

    def extremes(path: str, fixed: Any) -> list[Any]:
        dim = dims.get(path)
        if dim is None:
            return [fixed]
        return list(dim.choices) if dim.kind == "categorical" else [dim.low, dim.high]

    epochs = [int(e) for e in extremes("train.epochs", tree["train"]["epochs"])]
    schedule_tree = tree["schedule"]
    for target in dict.fromkeys([*SCHEDULE_TARGETS, *schedule_tree]):
        fixed_name = schedule_tree.get(target, {}).get("name")
        names = [n for n in extremes(f"schedule.{target}.name", fixed_name) if n]
        for allowed, bases, owner in _targets(target, registry, tree, extremes):
            for name in names:
                schedule = registry.get("schedule", name)
                fixed = schedule_tree.get(target, {})
                options = {
                    key: extremes(f"schedule.{target}.{key}", fixed.get(key, default))
                    for key, default in schedule.params.items()
                }
                corners = itertools.islice(
                    itertools.product(bases, epochs, *options.values()), MAX_CORNERS
                )
                for base, count, *values in corners:
                    params = dict(zip(options, values, strict=True))
                    place = Where(where.path, "schedule", target)
                    _check(place, (schedule.load(), name), (base, count, params), allowed, owner)


def _targets(
    target: str, registry: Registry, tree: Mapping[str, Any], extremes: Any
) -> list[tuple[Range, list[Any], str]]:
    """(allowed range, base values, what it is) of what the schedule of ``target`` moves."""
    if target == "lr":
        return [(LEARNING_RATE, extremes("train.lr", tree["train"]["lr"]), "train.lr")]
    parts = target.split(".")
    if parts[:2] == ["loss", "add"]:  # an added term's param or weight
        name, key = parts[2], parts[3]
        term, table = registry.get("loss", name), tree["loss"]["add"][name]
        allowed = WEIGHT if key == "weight" else term.ranges.get(key)
        if allowed is None:
            return []
        base = table.get(key, term.params.get(key))
        return [(allowed, extremes(target, base), f"loss.add.{name}.{key}")]
    target = parts[-1]  # temperature, alpha, or loss.<param> of the main loss
    found = []
    for loss_name in extremes("loss.name", tree["loss"]["name"]):
        loss = registry.get("loss", loss_name)
        allowed = loss.ranges.get(target)
        if target in loss.params and allowed is not None:
            base = tree["loss"].get(target, loss.params[target])
            found.append(
                (allowed, extremes(f"loss.{target}", base), f"loss '{loss_name}' {target}")
            )
    return found


def _check(
    where: Where,
    schedule: tuple[Any, str],
    point: tuple[float, int, dict[str, Any]],
    allowed: Range,
    owner: str,
) -> None:
    function, name = schedule
    base, epochs, params = point
    shown = ", ".join(f"{k} = {v!r}" for k, v in params.items()) or "no params"
    for epoch in range(epochs):
        try:
            value = function(base, epoch, epochs, **params)
        except Exception as exc:
            raise where.fail(
                f"schedule '{name}' ({shown}) fails for {owner} = {base!r} at epoch {epoch} "
                f"of {epochs}: {type(exc).__name__}: {exc}"
            ) from None
        if value not in allowed:
            raise where.fail(
                f"schedule '{name}' ({shown}) takes {owner} from {base!r} to {value:g} at "
                f"epoch {epoch} of {epochs}, outside its range {allowed}"
            )
