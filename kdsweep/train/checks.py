"""What can be known about a study's models and losses before training: every model
builds, every layer a loss reads exists, and which ways of training the losses allow."""

from __future__ import annotations

from torch import nn

from kdsweep.errors import ConfigError
from kdsweep.plugin.registry import Training
from kdsweep.study.settings import ModelChoice, TrialSettings
from kdsweep.study.space import WIDTH
from kdsweep.study.study import Study
from kdsweep.train import loss_terms
from kdsweep.train.models import ModelFactory, teacher_where


def reachable_losses(study: Study) -> list[TrialSettings]:
    """The base settings, once per main loss the search may choose."""
    return [study.resolve({"loss.name": name}) for name in study.loss_names()]


def needs_teacher(study: Study) -> bool:
    """Whether any loss the study may use needs a pre-trained teacher."""
    return any(
        component.needs_teacher
        for settings in reachable_losses(study)
        for component, _ in loss_terms.loss_terms(study.registry, settings)
    )


def can_fuse(study: Study) -> bool:
    """Whether every loss the study may use can train in fused groups: standard training
    (not mutual, not generations), no layers read, no loss modules."""
    for settings in reachable_losses(study):
        for component, _ in loss_terms.loss_terms(study.registry, settings):
            if component.training is not Training.STANDARD or component.layers:
                return False
            if loss_terms.is_module_loss(component):
                return False
    return True


def check_models(study: Study, models: ModelFactory) -> None:
    """Build every model once and check the loss layers: errors before any training."""
    base = study.resolve()
    for number, choice in enumerate(base.teachers):
        model = models.build("teacher", choice, teacher_where(number))
        if choice.weights:
            models.load_weights(model, choice.weights, number)
    for model, width in _reachable_students(study, base):
        models.build("student", ModelChoice(model, width), "[student] width / [search] width")
    for settings in reachable_losses(study):
        terms = loss_terms.loss_terms(study.registry, settings)
        main = terms[0][0]
        student = models.build("student", settings.student, "[student]")
        teacher: nn.Module | None = models.build("teacher", settings.teacher, "[teacher] width")
        if main.training is Training.GENERATIONS:
            teacher = student  # each generation learns from the one before
        elif not main.needs_teacher:
            teacher = None
        loss_terms.check_layers(study.path, terms, {"student": student, "teacher": teacher})
        if main.training is Training.MUTUAL and loss_terms.captured_layers(terms, "student"):
            raise ConfigError(
                f"{study.path}: [loss] name = '{main.name}': mutual learning trains "
                "several students and cannot be combined with losses that read layers"
            )


def _reachable_students(study: Study, base: TrialSettings) -> list[tuple[str, float]]:
    models = [base.student.model]
    widths: list[float] = [base.student.width]
    model_dim, width_dim = study.dimension("student.model"), study.dimension(WIDTH)
    if model_dim is not None:
        models = list(model_dim.choices)
    if width_dim is not None:
        widths = (
            list(width_dim.choices)
            if width_dim.kind == "categorical"
            else [width_dim.low, width_dim.high]
        )
    return [(model, width) for model in models for width in widths]
