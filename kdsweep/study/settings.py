"""Resolved settings: the plain dataclasses the engine, search and tracking consume."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class TrainSettings:
    """How one model is trained."""

    epochs: int = 20
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9  # SGD only
    weight_decay: float = 5e-4
    warmup_epochs: int = 0  # linear learning-rate warm-up before the lr schedule starts
    augment: str = "none"  # none | crop | flip | crop_flip, on batched tensors on the device
    crop_padding: int = 4  # pixels of zero padding before a random crop
    optimizer: str = "sgd"  # sgd | adam | adamw
    seed: int = 0
    precision: str = "auto"  # auto (bf16 on a CUDA device that has it, else fp32) | fp32 | bf16
    memory_format: str = (
        "auto"  # auto (channels_last for images on CUDA) | channels_last | contiguous
    )
    compile: bool = False  # torch.compile the student (compiled once per architecture)


@dataclass(frozen=True)
class ModelChoice:
    """A registered model and its width."""

    model: str
    width: float
    weights: str | None = None  # a local state-dict file; the model is then not trained

    def __str__(self) -> str:
        loaded = f", weights={self.weights}" if self.weights else ""
        return f"{self.model}(width={self.width}{loaded})"


@dataclass(frozen=True)
class ComponentChoice:
    """A registered component and the values of its declared params."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    weight: float = 1.0  # weight of an added loss term in the objective


@dataclass(frozen=True)
class TrialSettings:
    """Everything one trial (or the teacher and baseline runs) is built from."""

    dataset: ComponentChoice
    teacher: ModelChoice
    teacher_train: TrainSettings
    extra_teachers: tuple[ModelChoice, ...]  # further teachers (multi-teacher losses)
    student: ModelChoice
    train: TrainSettings
    loss: ComponentChoice
    extra_losses: tuple[ComponentChoice, ...]  # terms added to the main loss, with weights
    schedules: Mapping[str, ComponentChoice]  # target (temperature, alpha, lr) -> schedule

    @property
    def teachers(self) -> tuple[ModelChoice, ...]:
        """The teacher, then the extra teachers."""
        return (self.teacher, *self.extra_teachers)

    def flat(self) -> dict[str, Any]:
        """Every setting under a dotted name, e.g. ``loss.temperature`` (for MLflow params)."""
        tree = {
            "data": {"dataset": self.dataset.name, **self.dataset.params},
            "teacher": {
                **asdict(self.teacher),
                **asdict(self.teacher_train),
                **(
                    {"extra": ", ".join(map(str, self.extra_teachers))}
                    if self.extra_teachers
                    else {}
                ),
            },
            "student": asdict(self.student),
            "train": asdict(self.train),
            "loss": {
                "name": self.loss.name,
                **self.loss.params,
                **(
                    {"add": {t.name: {"weight": t.weight, **t.params} for t in self.extra_losses}}
                    if self.extra_losses
                    else {}
                ),
            },
            "schedule": {
                target: {"name": choice.name, **choice.params}
                for target, choice in self.schedules.items()
            },
        }
        return flatten(tree)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
