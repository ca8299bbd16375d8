"""Errors kdsweep reports to the user as one line, without a traceback."""

from __future__ import annotations


class KdsweepError(Exception):
    """Base class: the CLI prints the message alone and exits non-zero."""


class ConfigError(KdsweepError):
    """A study file or command-line setting is invalid."""


class PluginError(KdsweepError):
    """A plugin failed to load, broke a rule of the registry, or raised in a hook."""


class UnknownComponentError(ConfigError):
    """A study names a component no plugin registered."""
