"""A finished study's students: which trials to take (a number, the best, the best at a
width, the Pareto front), each one's student rebuilt from its plugin with the weights the
study kept, or retrained on training + validation data."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from optuna.trial import FrozenTrial, TrialState
from torch import nn

from kdsweep.errors import ConfigError
from kdsweep.plugin.types import DataSplits
from kdsweep.run.keep import names_student
from kdsweep.run.locations import RunOptions, StudyLocations
from kdsweep.run.stored import stored_study, stored_tracker
from kdsweep.search.keep import best_per_width, champion, pareto_front, scored_trials
from kdsweep.study.settings import TrialSettings
from kdsweep.study.study import Study
from kdsweep.track import models as logged
from kdsweep.track.models import StudentModel
from kdsweep.track.tracker import Tracker
from kdsweep.train.cache import ModelCache
from kdsweep.train.fit import FitResult, accuracy
from kdsweep.train.trainer import StudyTrainer


@dataclass(frozen=True)
class Selection:
    """Which trials: ``trial`` (a number), else ``front`` (the Pareto front), else the best
    by the first objective (at ``width`` if given)."""

    trial: int | None = None
    width: float | None = None
    front: bool = False


@dataclass(frozen=True)
class Student:
    """A trial's student, ready to use: the model (eval mode, CPU) and where it came from."""

    trial: FrozenTrial
    settings: TrialSettings
    model: nn.Module
    source: StudentModel | None  # the kept logged model (None: retrained now)
    retrained: FitResult | None = None


class StudyStudents:
    """The students of a finished study, on the CPU."""

    def __init__(self, study: Study, options: RunOptions | None = None) -> None:
        self.study = study
        self.options = options or RunOptions()
        self.locations = StudyLocations.of(study, self.options)
        self.optuna_study = stored_study(study, self.options)
        self._tracker: Tracker | None = None
        self._trainer: StudyTrainer | None = None

    @property
    def trainer(self) -> StudyTrainer:
        """The study's trainer on the CPU (its data, models and cached teachers)."""
        if self._trainer is None:
            cache = ModelCache(self.locations.cache)
            self._trainer = StudyTrainer(self.study, torch.device("cpu"), cache)
        return self._trainer

    @property
    def tracker(self) -> Tracker:
        """The study's MLflow records."""
        if self._tracker is None:
            self._tracker = stored_tracker(self.study, self.options)
        return self._tracker

    @property
    def data(self) -> DataSplits:
        """The study's data splits."""
        return self.trainer.data

    def choose(self, selection: Selection) -> list[FrozenTrial]:
        """The complete trials ``selection`` names; an error naming what is missing."""
        trials = {t.number: t for t in self.optuna_study.get_trials(deepcopy=False)}
        name = f"study '{self.study.settings.name}'"
        if selection.trial is not None:
            chosen = trials.get(selection.trial)
            if chosen is None or chosen.state != TrialState.COMPLETE:
                state = "has no such trial" if chosen is None else f"trial is {chosen.state.name}"
                raise ConfigError(
                    f"--trial {selection.trial}: {name} {state} (complete trials: "
                    f"{_numbers(t for t in trials.values() if t.state == TrialState.COMPLETE)})"
                )
            return [chosen]
        goals = self.study.settings.objectives
        scored = scored_trials(self.optuna_study, self.study.width_of)
        if selection.front:
            picked = pareto_front(scored, goals)
        elif selection.width is not None:
            best = best_per_width(scored, goals)
            if selection.width not in best:
                raise ConfigError(
                    f"--width {selection.width:g}: {name} has no complete trial at that "
                    f"width (widths: {', '.join(f'{w:g}' for w in sorted(best)) or 'none'})"
                )
            picked = [best[selection.width]]
        else:
            top = champion(scored, goals)
            picked = [top] if top is not None else []
        if not picked:
            raise ConfigError(f"{name} has no complete trial yet: run it first")
        return [trials[s.number] for s in sorted(picked, key=lambda s: s.number)]

    def kept(self) -> dict[int, StudentModel]:
        """The study's kept students by trial number (those its trials still name)."""
        trials = {t.number: t for t in self.optuna_study.get_trials(deepcopy=False)}
        return {
            student.trial: student
            for student in logged.student_models(self.tracker)
            if names_student(trials.get(student.trial), student)
        }

    def load(self, trial: FrozenTrial) -> Student:
        """The trial's kept student, rebuilt from its plugin with the stored weights."""
        from safetensors.torch import load_file

        kept = self.kept()
        source = kept.get(trial.number)
        if source is None:
            raise ConfigError(
                f"trial {trial.number} of study '{self.study.settings.name}' kept no student "
                f"([study] keep = {self.study.settings.keep!r}; kept: "
                f"{_numbers(kept) or 'none'}): choose a kept one, or retrain it "
                "(kdsweep export ... --retrain)"
            )
        settings = self.study.resolve(trial.params)
        model = self.trainer.models.build("student", settings.student, "[student]")
        with tempfile.TemporaryDirectory(prefix="kdsweep-") as folder:
            model.load_state_dict(load_file(logged.download_weights(source, Path(folder))))
        return Student(trial, settings, model.eval(), source)

    def retrain(self, trial: FrozenTrial) -> Student:
        """The trial's configuration trained again, with the same settings and seed, on
        training + validation data (the teachers stay the study's)."""
        settings = self.study.resolve(trial.params)
        trainer = self.trainer
        for number in range(len(trainer.base.teachers)):
            trainer.teacher(number)  # the study's teachers, from the cache
        trainer.keeps_weights = True
        trainer.use_data(train_and_validation(self.data))
        try:
            result = trainer.run_trial(settings)
        finally:
            self._trainer = None  # the next use sees the study's own splits again
        model = trainer.models.build("student", settings.student, "[student]")
        assert result.weights is not None
        model.load_state_dict(result.weights)
        return Student(trial, settings, model.eval(), None, result)

    def test_accuracy(self, student: Student) -> float:
        """The student's test accuracy, computed as the trial computed it."""
        data = self.data
        return accuracy(student.model, data.test_x, data.test_y, student.settings.train)


def train_and_validation(data: DataSplits) -> DataSplits:
    """The splits with the validation samples added to the training ones."""
    return replace(
        data,
        train_x=torch.cat([data.train_x, data.val_x]),
        train_y=torch.cat([data.train_y, data.val_y]),
    )


def _numbers(trials: Any) -> str:
    numbers = sorted(t if isinstance(t, int) else t.number for t in trials)
    return ", ".join(map(str, numbers))
