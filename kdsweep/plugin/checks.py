"""What the registry checks of a component when a plugin registers it, before any
study uses it: reserved param names, the callable's signature against the declared
params, and the declared ranges."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from kdsweep.errors import PluginError
from kdsweep.plugin.ranges import Range

# Param names a kind's table already uses for something else: a loss's table holds its
# ``name`` (and an added term's ``weight``), a schedule is called as
# ``schedule(base, epoch, epochs, **params)``, ``[data] dataset`` names the dataset.
RESERVED_PARAMS = {
    "loss": ("name", "weight"),
    "schedule": ("name", "base", "epoch", "epochs"),
    "dataset": ("dataset",),
}
# How many positional arguments kdsweep passes before the params, by kind.
_LEADING_ARGS = {"loss": 1, "schedule": 3, "dataset": 0}


def reserved_problem(kind: str, params: Mapping[str, Any]) -> str | None:
    """Which declared param, if any, uses a name reserved for ``kind``."""
    for key in params:
        if key in RESERVED_PARAMS.get(kind, ()):
            return (
                f"declared a param '{key}': the name is reserved "
                f"(reserved for a {kind}: {', '.join(RESERVED_PARAMS[kind])})"
            )
    return None


def signature_problem(
    kind: str, factory: Callable[..., Any], params: Mapping[str, Any]
) -> str | None:
    """How the callable's signature disagrees with the declared params, if it does: each
    declared param must be accepted (``**kwargs`` accepts any), each required argument
    after the leading ones declared. A loss module is checked in ``__init__(shapes,
    **params)`` and ``forward(batch, **params)``."""
    leading = _LEADING_ARGS.get(kind)
    if leading is None:
        return None
    if kind == "loss" and inspect.isclass(factory):
        calls = [("__init__", factory, 1), ("forward", getattr(factory, "forward", None), 2)]
    else:
        calls = [("function", factory, leading)]
    for what, function, skip in calls:
        problem = _accepts(function, skip, params) if function else None
        if problem:
            return f"its {what} {problem}"
    return None


def _accepts(function: Callable[..., Any], skip: int, params: Mapping[str, Any]) -> str | None:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # a builtin without a signature: nothing to check
        return None
    rest = list(signature.parameters.values())[skip:]
    if any(p.kind is p.VAR_KEYWORD for p in rest):
        return None
    named = {p.name for p in rest if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    unknown = [key for key in params if key not in named]
    if unknown:
        return f"takes no argument {', '.join(map(repr, unknown))} that params= declares"
    required = [p.name for p in rest if p.default is p.empty and p.kind is not p.VAR_POSITIONAL]
    undeclared = [name for name in required if name not in params]
    if undeclared:
        return f"requires {', '.join(map(repr, undeclared))}, which params= does not declare"
    return None


def checked_ranges(
    origin: object, name: str, params: Mapping[str, Any], ranges: Mapping[str, str] | None
) -> dict[str, Range]:
    """The declared ranges, each of a numeric param whose default lies in it."""
    checked = {}
    for param, text in (ranges or {}).items():
        default = params.get(param)
        if isinstance(default, bool) or not isinstance(default, int | float):
            raise PluginError(
                f"{origin} declared a range for '{param}' of '{name}', which is not a "
                "declared numeric param"
            )
        try:
            allowed = Range.parse(text)
        except ValueError as exc:
            raise PluginError(
                f"{origin} declared the range of '{param}' of '{name}': {exc}"
            ) from None
        if default not in allowed:
            raise PluginError(
                f"{origin} declared '{param}' of '{name}' with default {default!r} outside "
                f"its range {allowed}"
            )
        checked[param] = allowed
    return checked
