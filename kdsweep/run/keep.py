"""The students a study keeps: when a trial completes, its student is logged as an MLflow
logged model if ``[study] keep`` keeps it against the trials complete by then and those
closing with it (and made the registered champion when it is the best); at the end of
the study, students that fell off (or whose trial did not complete after all) are
deleted, and the champion alias is set to the best kept student.

The weights come back from wherever the trial trained (this process, a trainer process)
with its result, and are logged at once: no trial's weights outlive its closing.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from optuna.trial import FrozenTrial, TrialState

from kdsweep.errors import warn
from kdsweep.project import NAME, __version__
from kdsweep.run.records import component_tags
from kdsweep.search.keep import Scored, champion, kept, scored_trials
from kdsweep.study.settings import TrialSettings
from kdsweep.study.study import Study
from kdsweep.track import models as logged
from kdsweep.track.models import StudentModel, StudentRecord
from kdsweep.track.tracker import Tracker
from kdsweep.train.fit import FitResult
from kdsweep.train.trainer import StudyTrainer

MODEL_ID_ATTR = "model_id"  # the Optuna trial's user attribute naming its logged model


class StudentKeeper:
    """Keeps (logs) and, at the end, prunes the students of one study."""

    def __init__(self, trainer: StudyTrainer, tracker: Tracker) -> None:
        self.trainer = trainer
        self.tracker = tracker
        self.study: Study = trainer.study
        self.policy = self.study.settings.keep

    def scored(self, number: int, settings: TrialSettings, metrics: Mapping[str, float]) -> Scored:
        """A trial that just completed, as the keep policy sees it."""
        return Scored(
            number,
            tuple(float(metrics[goal.metric]) for goal in self.study.settings.objectives),
            settings.student.width,
            all(c.violation(metrics) <= 0 for c in self.study.settings.constraints),
        )

    def rivals(self, optuna_study: Any, closing: Sequence[Scored]) -> list[Scored]:
        """What the students of trials closing together are weighed against: the study's
        complete trials (one storage read, only when the policy decides) and the closing
        trials themselves. Weighed together, only the best of a fused part (one width) is
        logged, not each that beats the trials before it."""
        if self.policy == "all" and not self.study.settings.register:
            return list(closing)
        numbers = {s.number for s in closing}
        complete = scored_trials(optuna_study, self.study.width_of)
        return [*(s for s in complete if s.number not in numbers), *closing]

    def keep(
        self,
        trial: Any,
        settings: TrialSettings,
        outcome: FitResult,
        metrics: Mapping[str, float],
        run_id: str,
        rivals: Sequence[Scored] | None = None,
    ) -> StudentModel | None:
        """Log the student of a trial that just completed (``trial``: its Optuna trial,
        not yet told) when the policy keeps it against ``rivals`` (default: the trials
        complete by then, :meth:`rivals`); ``None`` when it does not."""
        if outcome.weights is None or self.policy == "none":
            return None
        goals = self.study.settings.objectives
        candidate = self.scored(trial.number, settings, metrics)
        if rivals is None:
            rivals = self.rivals(trial.study, [candidate])
        field = [s for s in rivals if s.number != trial.number] + [candidate]
        if trial.number not in kept(field, goals, self.policy):
            return None
        student = self._log(trial.number, settings, outcome.weights, metrics, run_id)
        trial.set_user_attr(MODEL_ID_ATTR, student.model_id)
        best = champion(field, goals)
        register = self.study.settings.register
        if register and best is not None and best.number == trial.number:
            logged.register_champion(self.tracker, register, student)
        return student

    def finish(self, optuna_study: Any) -> list[StudentModel]:
        """Delete the students the study no longer keeps (among finished trials), point the
        champion alias at the best kept one; returns the students kept."""
        trials = {t.number: t for t in optuna_study.get_trials(deepcopy=False)}
        goals = self.study.settings.objectives
        scored = scored_trials(optuna_study, self.study.width_of)
        keeping = kept(scored, goals, self.policy)
        survivors = []
        for student in logged.student_models(self.tracker):
            trial = trials.get(student.trial)
            if trial is not None and trial.state == TrialState.RUNNING:
                survivors.append(student)  # still closing (another worker): its call
            elif student.trial in keeping and names_student(trial, student):
                survivors.append(student)
            else:
                logged.delete_student(self.tracker, student)
        register = self.study.settings.register
        best = champion((s for s in scored if s.number in keeping), goals)
        by_trial = {s.trial: s for s in survivors}
        if register and best is not None and best.number in by_trial:
            logged.register_champion(self.tracker, register, by_trial[best.number])
        return survivors

    def _log(
        self,
        number: int,
        settings: TrialSettings,
        weights: dict[str, torch.Tensor],
        metrics: Mapping[str, float],
        run_id: str,
    ) -> StudentModel:
        """The student rebuilt from its plugin with the trained weights, logged."""
        from safetensors.torch import save_file

        model = self.trainer.models.build("student", settings.student, "[student]")
        model.load_state_dict(weights)
        model = model.to("cpu").eval()
        sample = self.trainer.data.test_x[:2].detach().to("cpu")
        with torch.no_grad():
            output = model(sample)
        record = StudentRecord(
            trial=number,
            run_id=run_id,
            params=settings.flat(),
            tags=component_tags(self.study, settings),
            pip_requirements=self._requirements(settings),
        )
        with tempfile.TemporaryDirectory(prefix="kdsweep-") as folder:
            weights_file = Path(folder) / logged.WEIGHTS_FILE
            save_file({k: v.contiguous() for k, v in weights.items()}, weights_file)
            return logged.log_student(
                self.tracker, model, weights_file, (sample.numpy(), output.numpy()), record
            )

    def _requirements(self, settings: TrialSettings) -> tuple[str, ...]:
        """What loading the pickled model needs: torch, kdsweep and the student's plugin."""
        origin = self.study.registry.get("student", settings.student.model).origin
        wanted = [f"torch=={torch.__version__.split('+')[0]}", f"{NAME}=={__version__}"]
        if origin.distribution != NAME and origin.version != "local":
            wanted.append(f"{origin.distribution}=={origin.version}")
        return tuple(wanted)


def names_student(trial: FrozenTrial | None, student: StudentModel) -> bool:
    """Whether the trial still names this logged model as its student (a student logged
    by a run that a crash cut short is not its trial's)."""
    return trial is not None and trial.user_attrs.get(MODEL_ID_ATTR) == student.model_id


def finish_quietly(keeper: StudentKeeper, optuna_study: Any) -> None:
    """:meth:`StudentKeeper.finish`, a warning instead of an error: the study ran."""
    try:
        keeper.finish(optuna_study)
    except Exception as exc:
        warn(f"could not tidy the kept students: {type(exc).__name__}: {exc}")
