"""Errors kdsweep reports to the user as one line, without a traceback, and warnings."""

from __future__ import annotations

import sys


def warn(message: str) -> None:
    """One ``kdsweep: warning: ...`` line on stderr: something went wrong and was handled."""
    print(f"kdsweep: warning: {message}", file=sys.stderr, flush=True)


class KdsweepError(Exception):
    """Base class: the CLI prints the message alone and exits non-zero."""


class ConfigError(KdsweepError):
    """A study file or command-line setting is invalid."""


class PluginError(KdsweepError):
    """A plugin failed to load, broke a rule of the registry, or raised in a hook."""


class UnknownComponentError(ConfigError):
    """A study names a component no plugin registered."""


class RunFailure(KdsweepError):
    """The run could not go on: no trial finished, or a store, disk or server failed.
    The study stays resumable; the command exits 1."""

    exit_code = 1


# What a failing store says when the machine, not kdsweep, is the cause.
ENVIRONMENT_CAUSES = (
    "database or disk is full",
    "no space left on device",
    "readonly database",
    "read-only file system",
    "unable to open database file",
    "permission denied",
    "disk i/o error",
    "connection refused",
    "could not translate host name",
    "timeout expired",
    "could not connect",
)


def environment_cause(exc: BaseException) -> str | None:
    """The cause of ``exc`` (or of an exception it wraps) when it is a full disk, a
    read-only or missing folder or an unreachable server; ``None`` otherwise."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            place = f"{current.filename}: " if current.filename else ""
            return f"{place}{current.strerror}"
        text = " ".join(str(current).split()).lower()
        for cause in ENVIRONMENT_CAUSES:
            if cause in text:
                return cause
        current = current.__cause__ or current.__context__
    return None
