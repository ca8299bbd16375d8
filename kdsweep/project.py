"""The project's name (the pluggy project and entry-point group) and installed version."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

NAME = "kdsweep"

try:
    __version__ = version(NAME)
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
