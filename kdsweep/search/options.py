"""Study-file choices of Optuna classes (samplers, pruners): the name looked up in a
table, the options checked against the class's signature; errors name file and key."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kdsweep.errors import ConfigError
from kdsweep.text import did_you_mean

SET_BY_KDSWEEP = ("seed", "search_space", "constraints_func")

Fail = Callable[[str], ConfigError]


def failing_at(path: Path, key: str, name: str) -> Fail:
    """A maker of errors at ``[study] key = name`` of the study file ``path``."""
    return lambda message: ConfigError(f"{path}: [study] {key} = {name!r}: {message}")


def named_class(table: Mapping[str, type], name: str, fail: Fail) -> type:
    """``table[name]``, or an error listing the names."""
    if name not in table:
        raise fail(f"unknown{did_you_mean(name, table)} (one of {', '.join(table)})")
    return table[name]


def checked_options(cls: type, options: Mapping[str, Any], fail: Fail) -> dict[str, Any]:
    """``options``, each an argument ``cls`` accepts (and kdsweep does not set itself)."""
    accepted = [
        name
        for name, p in inspect.signature(cls).parameters.items()
        if name not in SET_BY_KDSWEEP and p.kind is not p.VAR_KEYWORD
    ]
    for option in options:
        if option not in accepted:
            raise fail(f"unknown option '{option}' (options: {', '.join(accepted) or 'none'})")
    return dict(options)


def construct(cls: type, kwargs: Mapping[str, Any], fail: Fail) -> Any:
    """``cls(**kwargs)``, its argument errors reported at the study file's key."""
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise fail(str(exc)) from None
