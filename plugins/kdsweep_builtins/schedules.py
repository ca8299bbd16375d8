"""Built-in schedules: constant, linear, exponential, cosine, step, linear_warmup,
multistep, onecycle.

A schedule maps the configured value (``base``: the temperature T, the loss weight alpha
or the learning rate) and the 0-based epoch to the value in force during that epoch.
Decaying schedules reach ``floor`` at the last epoch.
"""

from __future__ import annotations

import math

from kdsweep.plugin import Registry, hookimpl


def _progress(epoch: int, epochs: int) -> float:
    """0 at the first epoch, 1 at the last."""
    return min(1.0, epoch / (epochs - 1)) if epochs > 1 else 1.0


def constant(base: float, epoch: int, epochs: int) -> float:
    """The configured value, unchanged."""
    return base


def linear(base: float, epoch: int, epochs: int, floor: float = 1.0) -> float:
    """Straight line from the configured value to ``floor`` at the last epoch."""
    return base + (floor - base) * _progress(epoch, epochs)


def exponential(base: float, epoch: int, epochs: int, floor: float = 1.0) -> float:
    """Geometric decay from the configured value to ``floor`` at the last epoch."""
    if base <= 0 or floor <= 0:
        raise ValueError(f"exponential schedule needs base ({base}) and floor ({floor}) > 0")
    return base * (floor / base) ** _progress(epoch, epochs)


def cosine(base: float, epoch: int, epochs: int, floor: float = 0.0) -> float:
    """Half a cosine from the configured value down to ``floor`` (SGDR, Loshchilov 2017)."""
    return floor + (base - floor) * (1 + math.cos(math.pi * _progress(epoch, epochs))) / 2


def step(base: float, epoch: int, epochs: int, gamma: float = 0.1, step_size: int = 10) -> float:
    """Multiply by ``gamma`` every ``step_size`` epochs."""
    if step_size < 1:
        raise ValueError(f"step_size must be >= 1, got {step_size}")
    return base * gamma ** (epoch // step_size)


def linear_warmup(base: float, epoch: int, epochs: int, warmup: int = 20) -> float:
    """Ramp in from base/warmup to base over the first ``warmup`` epochs, then hold:
    ``base * min((epoch + 1) / warmup, 1)`` (DKD's warm-up, Zhao et al. 2022)."""
    if warmup < 1:
        raise ValueError(f"warmup must be >= 1, got {warmup}")
    return base * min((epoch + 1) / warmup, 1.0)


def multistep(
    base: float, epoch: int, epochs: int, milestones: str = "150,180,210", gamma: float = 0.1
) -> float:
    """Multiply by ``gamma`` at each epoch listed in ``milestones`` (comma-separated)."""
    marks = [int(mark) for mark in milestones.split(",") if mark.strip()]
    return base * gamma ** sum(epoch >= mark for mark in marks)


def onecycle(
    base: float,
    epoch: int,
    epochs: int,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> float:
    """One cycle (Smith 2018): cosine up from base/div_factor to base over ``pct_start`` of
    training, then cosine down to base/(div_factor*final_div_factor)."""
    if not 0 < pct_start < 1:
        raise ValueError(f"pct_start must be in (0, 1), got {pct_start}")
    progress = _progress(epoch, epochs)
    start, end = base / div_factor, base / (div_factor * final_div_factor)
    if progress <= pct_start:
        return _cosine_between(start, base, progress / pct_start)
    return _cosine_between(base, end, (progress - pct_start) / (1 - pct_start))


def _cosine_between(start: float, end: float, fraction: float) -> float:
    return end + (start - end) * (1 + math.cos(math.pi * fraction)) / 2


@hookimpl
def kdsweep_register_schedules(registry: Registry) -> None:
    """Register the built-in schedules."""
    registry.add_schedule("constant", constant)
    registry.add_schedule("linear", linear, params={"floor": 1.0})
    registry.add_schedule(
        "exponential", exponential, params={"floor": 1.0}, ranges={"floor": "(0, inf)"}
    )
    registry.add_schedule("cosine", cosine, params={"floor": 0.0})
    registry.add_schedule(
        "step",
        step,
        params={"gamma": 0.1, "step_size": 10},
        ranges={"gamma": "(0, inf)", "step_size": "[1, inf)"},
    )
    registry.add_schedule(
        "linear_warmup", linear_warmup, params={"warmup": 20}, ranges={"warmup": "[1, inf)"}
    )
    registry.add_schedule(
        "multistep",
        multistep,
        params={"milestones": "150,180,210", "gamma": 0.1},
        ranges={"gamma": "(0, inf)"},
    )
    registry.add_schedule(
        "onecycle",
        onecycle,
        params={"pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1e4},
        ranges={"pct_start": "[0, 1]", "div_factor": "(0, inf)", "final_div_factor": "(0, inf)"},
    )
