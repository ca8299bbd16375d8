"""The Optuna side: study, sampler, pruner and the ask-and-tell loop.

Knows nothing of PyTorch or MLflow: it asks for trial parameters, hands them to an
objective and tells Optuna the outcome.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from kdsweep.config import StudySettings
from kdsweep.space import Dimension

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class TrialPruned(optuna.TrialPruned):
    """Raised by :meth:`TrialHandle.report` when the pruner stops a trial."""


@dataclass
class TrialHandle:
    """What the objective sees of an Optuna trial."""

    trial: optuna.Trial
    params: dict[str, Any]

    @property
    def number(self) -> int:
        """The Optuna trial number."""
        return self.trial.number

    def report(self, step: int, value: float) -> None:
        """Report the objective at ``step``; raises :class:`TrialPruned` if pruned."""
        self.trial.report(value, step)
        if self.trial.should_prune():
            raise TrialPruned(f"pruned at epoch {step} (val_accuracy {value:.4f})")


Objective = Callable[[TrialHandle], float]


def make_sampler(settings: StudySettings) -> optuna.samplers.BaseSampler:
    """The sampler named in ``[study] sampler``, seeded by ``[study] seed``."""
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=settings.seed)
    return optuna.samplers.TPESampler(seed=settings.seed, n_startup_trials=8)


def make_pruner(settings: StudySettings) -> optuna.pruners.BasePruner:
    """The pruner named in ``[study] pruner``."""
    if settings.pruner == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)


def open_study(settings: StudySettings, storage: str) -> optuna.Study:
    """Create the study, or load it when it exists (so a rerun resumes it)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        study_name=settings.name,
        storage=storage,
        sampler=make_sampler(settings),
        pruner=make_pruner(settings),
        direction="maximize",
        load_if_exists=True,
    )


def finished_trials(study: optuna.Study) -> int:
    """Trials that count towards ``n_trials``: complete or pruned."""
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def suggest(trial: optuna.Trial, space: Sequence[Dimension]) -> dict[str, Any]:
    """Ask the sampler for a value of every searched setting (path -> value)."""
    params: dict[str, Any] = {}
    for dim in space:
        if dim.kind == "categorical":
            params[dim.path] = trial.suggest_categorical(dim.path, list(dim.choices))
        elif dim.kind == "int":
            params[dim.path] = trial.suggest_int(
                dim.path, int(dim.low), int(dim.high), step=int(dim.step or 1), log=dim.log
            )
        else:
            params[dim.path] = trial.suggest_float(
                dim.path, dim.low, dim.high, step=dim.step, log=dim.log
            )
    return params


@dataclass(frozen=True)
class Outcome:
    """How one trial ended."""

    number: int
    state: TrialState
    value: float | None
    reason: str = ""


def run_trials(
    study: optuna.Study,
    space: Sequence[Dimension],
    objective: Objective,
    n_trials: int,
    timeout: float | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Run trials until the study holds ``n_trials`` finished ones or ``timeout`` passes.

    Each call makes at most as many attempts as trials were missing when it began, so a
    failing objective cannot loop forever; a failure stays inside its trial. Ctrl-C marks
    the running trial failed and propagates.
    """
    started = time.monotonic()
    outcomes: list[Outcome] = []
    for _ in range(max(0, n_trials - finished_trials(study))):
        if timeout is not None and time.monotonic() - started >= timeout:
            break
        if finished_trials(study) >= n_trials:
            break
        trial = study.ask()
        handle = TrialHandle(trial, suggest(trial, space))
        try:
            value = objective(handle)
        except optuna.TrialPruned as exc:
            study.tell(trial, state=TrialState.PRUNED)
            outcome = Outcome(trial.number, TrialState.PRUNED, None, str(exc))
        except KeyboardInterrupt:
            study.tell(trial, state=TrialState.FAIL)
            raise
        except Exception as exc:
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}")
            study.tell(trial, state=TrialState.FAIL)
            outcome = Outcome(trial.number, TrialState.FAIL, None, f"{type(exc).__name__}: {exc}")
        else:
            study.tell(trial, value)
            outcome = Outcome(trial.number, TrialState.COMPLETE, value, f"val_accuracy {value:.4f}")
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)
    return outcomes
