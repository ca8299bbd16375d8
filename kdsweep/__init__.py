"""kdsweep: knowledge-distillation sweeps with pluggy plugins, Optuna search and MLflow tracking.

The public Python API; the ``kdsweep`` command is a thin layer over it. Each function
imports its layer when called, so ``import kdsweep`` stays light.

>>> import kdsweep  # doctest: +SKIP
>>> study = kdsweep.load_study("studies/digits.toml")  # doctest: +SKIP
>>> summary = kdsweep.run(study, kdsweep.RunOptions(n_trials=8))  # doctest: +SKIP
>>> frame = kdsweep.load_results(study)  # doctest: +SKIP
>>> student = kdsweep.load_student(study)  # the best kept student, an nn.Module  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from kdsweep.project import __version__
from kdsweep.run.locations import RunOptions

if TYPE_CHECKING:
    import pandas as pd
    from torch import nn

    from kdsweep.plugin.registry import Registry
    from kdsweep.run.display import Display
    from kdsweep.run.summary import StudySummary
    from kdsweep.study.study import Study

__all__ = [
    "RunOptions",
    "__version__",
    "load_curves",
    "load_registry",
    "load_results",
    "load_student",
    "load_study",
    "run",
]


def load_registry(
    plugins: Sequence[str] = (),
    *,
    base_dir: str | Path | None = None,
    disabled: Iterable[str] | None = None,
) -> Registry:
    """Every registered component: the entry-point group ``kdsweep``, then ``plugins``.

    :param plugins: local plugin modules or ``.py`` files (relative to ``base_dir``).
    :param disabled: plugin names to skip (default: ``KDSWEEP_DISABLE_PLUGINS``).
    """
    from kdsweep.plugin.manager import load_registry as load

    return load(plugins, base_dir=Path(base_dir) if base_dir else None, disabled=disabled)


def load_study(
    path: str | Path, plugins: Sequence[str] = (), *, registry: Registry | None = None
) -> Study:
    """The validated study of a study file; every error in it is raised here.

    :param plugins: local plugin modules besides the installed ones and ``[study] plugins``.
    :param registry: validate against this registry instead of loading the plugins.
    """
    from kdsweep.study.load import load_study as load

    return load(path, plugins, registry=registry)


def run(
    study: Study | str | Path, options: RunOptions | None = None, *, display: Display | None = None
) -> StudySummary:
    """Run (or resume) a study, as ``kdsweep run`` does, and return its summary.

    :param study: a loaded study or a study file's path.
    :param options: command-line overrides of the study file (trials, stores, device, ...).
    :param display: the terminal progress display (default: rich progress on stderr).
    """
    from kdsweep.run.study_run import run_study
    from kdsweep.study.load import load_study as load

    loaded = load(study) if isinstance(study, str | Path) else study
    return run_study(loaded, options or RunOptions(), display)


def load_results(study: Study | str | Path, results: str | Path | None = None) -> pd.DataFrame:
    """The trials of a study as a pandas DataFrame, one row per trial.

    :param study: a loaded study or a study file's path.
    :param results: the results folder, when it is not the study file's.
    """
    from kdsweep.cli.results import load_results as load

    return load(study, str(results) if results is not None else None)


def load_curves(study: Study | str | Path, results: str | Path | None = None) -> pd.DataFrame:
    """Every trial's validation accuracy per epoch, in long format (one row per trial and
    epoch: ``trial``, ``state``, ``epoch``, ``val_accuracy``).

    :param study: a loaded study or a study file's path.
    :param results: the results folder, when it is not the study file's.
    """
    from kdsweep.cli.results import load_curves as load

    return load(study, str(results) if results is not None else None)


def load_student(
    study: Study | str | Path,
    trial: int | None = None,
    *,
    width: float | None = None,
    results: str | Path | None = None,
    storage: str | None = None,
    tracking_uri: str | None = None,
) -> nn.Module:
    """A kept student of a finished study, rebuilt from its plugin with its trained weights
    (eval mode, on the CPU).

    :param trial: the trial's number (default: the best trial by the first objective).
    :param width: with no ``trial``, the best trial at this student width.
    :param results: the results folder, when it is not the study file's.
    :param storage: the Optuna storage URL the study ran on, when it is not the default.
    :param tracking_uri: the MLflow tracking URI it ran with, when it is not the default.
    """
    from kdsweep.export.students import Selection, StudyStudents
    from kdsweep.study.load import load_study as load

    loaded = load(study) if isinstance(study, str | Path) else study
    options = RunOptions(
        results=str(results) if results is not None else None,
        storage=storage,
        tracking_uri=tracking_uri,
    )
    students = StudyStudents(loaded, options)
    (chosen,) = students.choose(Selection(trial=trial, width=width))
    return students.load(chosen).model
