"""kdsweep: knowledge-distillation sweeps with pluggy plugins, Optuna search and MLflow tracking."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kdsweep")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = ["__version__", "load_results"]


def load_results(*args, **kwargs):
    """The trials of a study as a pandas DataFrame; see :func:`kdsweep.results.load_results`."""
    from kdsweep.results import load_results as load

    return load(*args, **kwargs)
