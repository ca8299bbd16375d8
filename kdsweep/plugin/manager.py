"""Builds the plugin manager and the registry from every plugin source.

Sources, in order: installed distributions through the entry-point group ``kdsweep``
(kdsweep's own first-party plugins among them) and local modules the user names.
``KDSWEEP_DISABLE_PLUGINS`` (comma-separated plugin names) skips plugins.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from kdsweep.errors import KdsweepError, PluginError, warn
from kdsweep.plugin import spec
from kdsweep.plugin.registry import Origin, Registry, registering_for
from kdsweep.project import NAME
from kdsweep.text import did_you_mean

DISABLE_ENV = "KDSWEEP_DISABLE_PLUGINS"
HOOK_NAMES = (
    "kdsweep_register_datasets",
    "kdsweep_register_teachers",
    "kdsweep_register_students",
    "kdsweep_register_losses",
    "kdsweep_register_schedules",
)


@dataclass
class Plugins:
    """A plugin manager and where each of its plugins came from."""

    manager: pluggy.PluginManager
    origins: dict[str, Origin] = field(default_factory=dict)


def disabled_from_env() -> set[str]:
    """Plugin names listed in ``KDSWEEP_DISABLE_PLUGINS``."""
    raw = os.environ.get(DISABLE_ENV, "")
    return {name.strip() for name in raw.split(",") if name.strip()}


def get_plugin_manager(
    modules: Sequence[str] = (),
    *,
    base_dir: Path | None = None,
    disabled: Iterable[str] | None = None,
) -> Plugins:
    """Load every plugin: entry points of group ``kdsweep``, then ``modules``.

    :param modules: local plugins, each an importable module name or a ``.py`` path
        (relative paths resolve against ``base_dir``, e.g. the study file's folder).
    :param disabled: plugin names to skip; defaults to ``KDSWEEP_DISABLE_PLUGINS``.
    """
    plugins = Plugins(pluggy.PluginManager(NAME))
    plugins.manager.add_hookspecs(spec)
    for name in disabled_from_env() if disabled is None else disabled:
        plugins.manager.set_blocked(name)
    for entry_point in sorted(importlib.metadata.entry_points(group=NAME), key=lambda e: e.name):
        if plugins.manager.is_blocked(entry_point.name):
            continue
        dist = entry_point.dist
        origin = Origin(entry_point.name, dist.name if dist else "?", dist.version if dist else "?")
        module = _import(origin, lambda ep=entry_point: ep.load())
        _register(plugins, module, origin)
    for reference in modules:
        _register_local(plugins, reference, base_dir or Path.cwd())
    try:
        plugins.manager.check_pending()
    except pluggy.PluginValidationError as exc:
        name = plugins.manager.get_name(exc.plugin) or "?"
        hint = _misspelt_hooks(exc.plugin)
        raise PluginError(f"{plugins.origins.get(name, name)}: {exc}{hint}") from None
    return plugins


def _misspelt_hooks(module: object) -> str:
    """Did-you-mean for the module's functions named like a hook that is not one."""
    hints = [
        f"{name}{did_you_mean(name, HOOK_NAMES)}"
        for name in dir(module)
        if name.startswith(f"{NAME}_") and name not in HOOK_NAMES
    ]
    return f" ({'; '.join(hints)}; hooks: {', '.join(HOOK_NAMES)})" if hints else ""


def _warn_if_empty(plugins: Plugins, module: object, origin: Origin) -> None:
    """A plugin that implements no hook registers nothing: usually a forgotten
    ``@hookimpl``, which pluggy would otherwise pass over in silence."""
    if plugins.manager.get_hookcallers(module):
        return
    unmarked = [name for name in HOOK_NAMES if callable(getattr(module, name, None))]
    reason = (
        f"{', '.join(unmarked)} lack{'s' if len(unmarked) == 1 else ''} @hookimpl"
        if unmarked
        else "it implements no kdsweep hook"
    )
    warn(f"{origin} registers nothing: {reason}")


def build_registry(plugins: Plugins) -> Registry:
    """Call every registration hook through pluggy into a new registry."""
    registry = Registry()
    for hook_name in HOOK_NAMES:
        getattr(plugins.manager.hook, hook_name)(registry=registry)
    return registry


def _attributed(function: Callable[..., Any], origin: Origin, hook_name: str) -> Callable[..., Any]:
    """A hook implementation that stamps what it registers with its plugin's origin and
    re-raises its errors naming the plugin (pluggy calls it with positional arguments;
    a wrapper implementation is a generator, attributed across its ``yield``)."""

    @contextmanager
    def attributed() -> Iterator[None]:
        with registering_for(origin):
            try:
                yield
            except KdsweepError:
                raise
            except Exception as exc:
                raise PluginError(
                    f"{origin} raised in {hook_name}: {type(exc).__name__}: {exc}"
                ) from exc

    if inspect.isgeneratorfunction(function):

        @functools.wraps(function)
        def wrapper(*args: Any) -> Any:
            with attributed():
                return (yield from function(*args))

        return wrapper

    @functools.wraps(function)
    def call(*args: Any) -> Any:
        with attributed():
            return function(*args)

    return call


def load_registry(
    modules: Sequence[str] = (),
    *,
    base_dir: Path | None = None,
    disabled: Iterable[str] | None = None,
) -> Registry:
    """The registry built from every plugin source (see :func:`get_plugin_manager`)."""
    return build_registry(get_plugin_manager(modules, base_dir=base_dir, disabled=disabled))


def _register_local(plugins: Plugins, reference: str, base_dir: Path) -> None:
    if reference.endswith(".py"):
        path = Path(reference) if Path(reference).is_absolute() else base_dir / reference
        name = path.stem
        origin = Origin(name, f"local file {path}", "local")
        if plugins.manager.is_blocked(name):
            return
        if not path.is_file():
            raise PluginError(f"{origin} failed to load: file not found")
        module = _import(origin, lambda: _import_file(name, path))
    else:
        name = reference
        if plugins.manager.is_blocked(name):
            return
        origin = Origin(name, "local module", "local")
        module = _import(origin, lambda: _import_module(reference, base_dir))
    version = getattr(module, "__version__", None)
    if isinstance(version, str):
        origin = Origin(origin.plugin, origin.distribution, version)
    _register(plugins, module, origin)


def _register(plugins: Plugins, module: object, origin: Origin) -> None:
    if plugins.manager.has_plugin(origin.plugin):
        raise PluginError(
            f"two plugins are named '{origin.plugin}': {plugins.origins[origin.plugin]} "
            f"and {origin}"
        )
    try:
        plugins.manager.register(module, name=origin.plugin)
    except (ValueError, pluggy.PluginValidationError) as exc:
        raise PluginError(f"{origin} could not be registered: {exc}") from None
    plugins.origins[origin.plugin] = origin
    _warn_if_empty(plugins, module, origin)
    for caller in plugins.manager.get_hookcallers(module) or ():
        for impl in caller.get_hookimpls():
            if impl.plugin_name == origin.plugin:
                impl.function = _attributed(impl.function, origin, caller.name)


def _import(origin: Origin, load: object) -> ModuleType:
    try:
        return load()  # type: ignore[operator]
    except Exception as exc:
        raise PluginError(f"{origin} failed to load: {type(exc).__name__}: {exc}") from exc


def _import_module(name: str, base_dir: Path) -> ModuleType:
    if str(base_dir) not in sys.path:
        sys.path.insert(0, str(base_dir))
    return importlib.import_module(name)


def _import_file(name: str, path: Path) -> ModuleType:
    spec_ = importlib.util.spec_from_file_location(f"kdsweep_local_plugins.{name}", path)
    if spec_ is None or spec_.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(module)
    return module
