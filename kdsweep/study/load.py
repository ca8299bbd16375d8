"""Read a study file, load the plugins it needs and validate it: one call, before training."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from kdsweep.errors import ConfigError
from kdsweep.plugin.manager import load_registry
from kdsweep.plugin.registry import Registry
from kdsweep.study.schema import STUDY_FIELDS, Where, check_value
from kdsweep.study.study import Study
from kdsweep.study.validate import validate_study


def load_study(
    path: str | Path, plugins: Sequence[str] = (), *, registry: Registry | None = None
) -> Study:
    """The validated study of a file: every error before any training.

    :param plugins: local plugin modules (or ``.py`` files) to load besides those of the
        entry-point group and ``[study] plugins`` (the command line's ``--plugin``).
    :param registry: validate against this registry instead of loading the plugins.
    """
    path = Path(path)
    raw = read_study_file(path)
    if registry is None:
        modules = (*study_plugins(raw, path), *plugins)
        registry = load_registry(modules, base_dir=path.parent)
    return replace(validate_study(path, raw, registry), extra_plugins=tuple(plugins))


def read_study_file(path: str | Path) -> dict[str, Any]:
    """Parse the TOML of a study file; a clear error for a missing or malformed file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read study file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
            f"{exc.start}): a study file is TOML, which is UTF-8"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def study_plugins(raw: Mapping[str, Any], path: Path) -> tuple[str, ...]:
    """The local plugin modules named in ``[study] plugins`` (needed before validation)."""
    value = raw.get("study", {}).get("plugins", ()) if isinstance(raw.get("study"), dict) else ()
    return check_value(value, STUDY_FIELDS["plugins"], Where(path, "study", "plugins"))
