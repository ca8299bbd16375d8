"""Tiny study files for tests: the one place tests write study TOML from."""

from __future__ import annotations

import copy
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# The tiny study (seconds to run): section -> key -> value, written as TOML.
TINY: dict[str, dict[str, Any]] = {
    "study": {"name": "tiny", "n_trials": 3, "seed": 0, "pruner": "none"},
    "teacher": {"model": "cnn", "width": 8, "epochs": 3},
    "student": {"model": "cnn", "width": 2},
    "train": {"epochs": 2, "batch_size": 128, "lr": 0.05},
    "loss": {"name": "kd"},
    "schedule": {"temperature": "linear"},
}


def toml_value(value: Any) -> str:
    """``value`` as a TOML value (strings, numbers, booleans, lists, inline tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(map(toml_value, value)) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    return repr(value)


def toml_key(key: str) -> str:
    """A bare key, or a quoted one when it holds dots (``"loss.beta"``)."""
    return key if key.replace("_", "").replace("-", "").isalnum() else f'"{key}"'


def study_toml(sections: Mapping[str, Mapping[str, Any] | None], search: str, extra: str) -> str:
    """A study file: the sections (``None`` leaves one out), ``[search]`` and ``extra``."""
    lines: list[str] = []
    for section, table in sections.items():
        if table is None:
            continue
        lines.append(f"[{section}]")
        lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items() if v is not None]
        lines.append("")
    lines += ["[search]", textwrap.dedent(search).strip(), ""]
    return "\n".join(lines) + textwrap.dedent(extra)


def write_tiny_study(
    path: Path,
    body: str | None = None,
    *,
    name: str = "tiny",
    n_trials: int = 3,
    loss: str = "kd",
    loss_params: Mapping[str, Any] | None = None,
    pruner: str = "none",
    search: str = "temperature = { low = 1.0, high = 8.0, log = true }",
    extra: str = "",
    study_keys: str = "",
    **sections: Mapping[str, Any] | None,
) -> Path:
    """Write a study file to ``path`` and return it.

    ``body`` replaces the whole file. Otherwise :data:`TINY` is written with ``name``,
    ``n_trials``, ``loss`` (with ``loss_params``) and ``pruner`` set, ``study_keys``
    (TOML lines) added to ``[study]``, each keyword named like a section updating that
    section (a key set to ``None`` is left out; ``section=None`` leaves the section out),
    ``search`` as the ``[search]`` section and ``extra`` appended.
    """
    if body is not None:
        path.write_text(textwrap.dedent(body))
        return path
    tables: dict[str, Any] = copy.deepcopy(TINY)
    tables["study"].update(name=name, n_trials=n_trials, pruner=pruner)
    tables["loss"] = {"name": loss, **(loss_params or {})}
    for section, table in sections.items():
        tables[section] = None if table is None else {**(tables.get(section) or {}), **table}
    text = study_toml(tables, search, extra)
    if study_keys:
        text = text.replace("[study]\n", f"[study]\n{textwrap.dedent(study_keys).strip()}\n", 1)
    path.write_text(text)
    return path
