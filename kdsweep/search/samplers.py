"""Optuna samplers from ``[study] sampler``, with their options checked against the study
before any training."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from kdsweep.search.options import Fail, checked_options, construct, failing_at, named_class
from kdsweep.study.space import Dimension
from kdsweep.study.study import StudySettings

SAMPLER_CLASSES = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "grid": optuna.samplers.GridSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
    "gp": optuna.samplers.GPSampler,
    "nsga2": optuna.samplers.NSGAIISampler,
    "nsga3": optuna.samplers.NSGAIIISampler,
    "qmc": optuna.samplers.QMCSampler,
}
SAMPLER_DEFAULTS: dict[str, dict[str, Any]] = {"tpe": {"n_startup_trials": 8}}
CONSTRAINED_SAMPLERS = ("tpe", "gp", "nsga2", "nsga3")


def stream_seed(seed: int, first_trial: int) -> int:
    """The seed of the random stream a process starts at ``first_trial`` (``seed`` itself
    for trial 0), so that processes sharing a study sample differently."""
    return (seed + first_trial * 1_000_003) % 2**32


def make_sampler(
    settings: StudySettings, space: Sequence[Dimension], path: Path
) -> optuna.samplers.BaseSampler:
    """The sampler named in ``[study] sampler``, seeded by ``[study] seed``."""
    name = settings.sampler
    fail = failing_at(path, "sampler", name)
    cls = named_class(SAMPLER_CLASSES, name, fail)
    multi_objective = len(settings.objectives) > 1
    kwargs: dict[str, Any] = {**SAMPLER_DEFAULTS.get(name, {}), "seed": settings.seed}
    if name == "cmaes":
        if multi_objective:
            raise fail("CMA-ES optimises a single objective; use nsga2, nsga3, tpe or gp")
        if all(dim.kind == "categorical" for dim in space):
            raise fail(
                "CMA-ES needs at least one numeric range in [search]; "
                "with choices only, use tpe, random or grid"
            )
    if name == "grid":
        kwargs["search_space"] = _grid(space, fail)
    if settings.constraints and name not in CONSTRAINED_SAMPLERS:
        raise fail(f"it ignores constraints; use one of {', '.join(CONSTRAINED_SAMPLERS)}")
    kwargs.update(checked_options(cls, settings.sampler_options, fail))
    with warnings.catch_warnings():  # the study file chose it, experimental or not
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return construct(cls, kwargs, fail)


def _grid(space: Sequence[Dimension], fail: Fail) -> dict[str, list[Any]]:
    """Every value of every dimension: choices, int ranges, float ranges with a step."""
    if not space:
        raise fail("grid search needs a [search] section")
    grid: dict[str, list[Any]] = {}
    for dim in space:
        if dim.kind == "categorical":
            grid[dim.path] = list(dim.choices)
        elif dim.kind == "int":
            grid[dim.path] = list(range(int(dim.low), int(dim.high) + 1, int(dim.step or 1)))
        elif dim.step is not None:
            count = math.floor((dim.high - dim.low) / dim.step + 1e-9) + 1
            grid[dim.path] = [
                float(v) for v in np.linspace(dim.low, dim.low + dim.step * (count - 1), count)
            ]
        else:
            raise fail(f"grid search needs a finite space: give '{dim.path}' a step or choices")
    return grid
