"""Built-in schedules ``constant``, ``linear`` and ``exponential``.

A schedule maps the configured value (``base``, e.g. the temperature T) and the 0-based
epoch to the value in force during that epoch. Decaying schedules reach ``floor`` at the
last epoch.
"""

from __future__ import annotations

from kdsweep.plugin import Registry, hookimpl


def _progress(epoch: int, epochs: int) -> float:
    return epoch / (epochs - 1) if epochs > 1 else 1.0


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


@hookimpl
def kdsweep_register_schedules(registry: Registry) -> None:
    """Register ``constant``, ``linear`` and ``exponential``."""
    registry.add_schedule("constant", constant)
    registry.add_schedule("linear", linear, params={"floor": 1.0})
    registry.add_schedule("exponential", exponential, params={"floor": 1.0})
