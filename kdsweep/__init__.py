"""kdsweep: knowledge-distillation sweeps with pluggy plugins, Optuna search and MLflow tracking."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kdsweep")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
