"""The training loop, in one place: takes resolved settings, returns metrics.

Knows nothing of Optuna or MLflow. Data is held as tensors on the training device and
batched by index; metrics are read from the device once per epoch, never per step.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from kdsweep.plugin.types import DataSplits, LossBatch
from kdsweep.study.settings import TrainSettings
from kdsweep.train.augment import make_augment
from kdsweep.train.device import make_optimizer, memory_format, mixed_precision, resolve_auto
from kdsweep.train.features import FeatureTap

# schedule(base, epoch, epochs) -> value in force during that epoch
BoundSchedule = Callable[[float, int, int], float]


WEIGHT = "weight"  # the key of a schedule that moves the term's weight (no param has it)


@dataclass(frozen=True)
class TermState:
    """A term in force during one epoch: its weight and its params' values."""

    weight: float
    params: Mapping[str, Any]


@dataclass(frozen=True)
class LossTerm:
    """One loss with its param values, its weight in the training loss, and the schedules that
    move some of its params (or, under :data:`WEIGHT`, its weight) per epoch."""

    fn: Callable[..., torch.Tensor]
    params: Mapping[str, Any] = field(default_factory=dict)
    weight: float = 1.0
    schedules: Mapping[str, BoundSchedule] = field(default_factory=dict)
    # The loss of k students at once, for fused trials: see Registry.add_loss(batched=...).
    batched: Callable[..., torch.Tensor] | None = None

    def at(self, epoch: int, epochs: int) -> TermState:
        """The weight and params in force during ``epoch``: scheduled ones moved."""
        weight = self.schedules.get(WEIGHT)
        return TermState(
            self.weight if weight is None else weight(self.weight, epoch, epochs),
            {
                key: self.schedules[key](value, epoch, epochs) if key in self.schedules else value
                for key, value in self.params.items()
            },
        )


@dataclass(frozen=True)
class TrainingLoss:
    """The training loss: the weighted sum of its terms (the first is the main loss).

    :param student_layers: layers of the student captured for the terms.
    :param teacher_layers: layers of the teacher captured (the teacher then runs per batch).
    :param modules: loss modules whose parameters train with the student (e.g. connectors).
    """

    terms: tuple[LossTerm, ...]
    student_layers: tuple[str, ...] = ()
    teacher_layers: tuple[str, ...] = ()
    modules: tuple[nn.Module, ...] = ()

    @classmethod
    def of(
        cls,
        fn: Callable[..., torch.Tensor],
        batched: Callable[..., torch.Tensor] | None = None,
        **params: Any,
    ) -> TrainingLoss:
        """A single unscheduled loss (with its batched form, if any)."""
        return cls((LossTerm(fn, params, batched=batched),))


@dataclass(frozen=True)
class Teachers:
    """What the students learn from.

    :param models: the teachers, in eval mode.
    :param logits: each teacher's logits on the whole training set, computed once; used
        when the batch is not augmented and no teacher layer is read. Otherwise the
        teachers run on each batch (no gradients), so they see exactly the student's view.
    """

    models: tuple[nn.Module, ...] = ()
    logits: tuple[torch.Tensor, ...] = ()


@dataclass(frozen=True)
class EpochReport:
    """What one epoch produced; ``values`` holds the scheduled params in force (e.g. T)."""

    epoch: int
    train_loss: float
    val_accuracy: float
    values: Mapping[str, float]
    train_time_s: float = 0.0  # training and evaluation so far, callbacks excluded


@dataclass(frozen=True)
class FitResult:
    """Final metrics of one training run. ``train_time_s`` excludes the epoch callback."""

    val_accuracy: float
    test_accuracy: float
    params: int
    train_time_s: float
    # The (first) student's trained state dict on the CPU, when the study keeps students.
    weights: dict[str, torch.Tensor] | None = None


def cpu_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the model's state dict on the CPU (it outlives the model, crosses pipes)."""
    return {key: value.detach().to("cpu", copy=True) for key, value in model.state_dict().items()}


EpochCallback = Callable[[EpochReport], None]


class DivergedError(ArithmeticError):
    """The training loss became NaN or infinite."""


def diverged(loss: TrainingLoss, train_loss: float, epoch: int) -> DivergedError:
    """The error of a loss that became NaN or infinite, naming the terms whose last value
    was not finite (those that say: see ``train.loss_terms.CheckedLoss``)."""
    labels = [getattr(term.fn, "non_finite_label", lambda: "")() for term in loss.terms]
    named = ", ".join(label for label in labels if label)
    return DivergedError(
        f"training loss is {train_loss} at epoch {epoch}"
        + (f" (not finite: {named})" if named else "")
    )


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


_SEEDING = threading.Lock()  # the global generator is shared by trials in several threads


def build_seeded(build: Callable[[], nn.Module], seed: int, device: torch.device) -> nn.Module:
    """Build a model with weights initialised from ``seed`` (reproducible on CPU)."""
    with _SEEDING:
        torch.manual_seed(seed)
        model = build()
    return model.to(device)


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    inputs: torch.Tensor,
    batch_size: int = 2048,
    settings: TrainSettings | None = None,
) -> torch.Tensor:
    """The model's logits for ``inputs``, in eval mode, without gradients (with the
    precision and memory format of ``settings`` when given)."""
    was_training = model.training
    model.eval()
    settings = settings or TrainSettings(precision="fp32", memory_format="contiguous")
    layout = memory_format(settings, inputs)
    with mixed_precision(settings, inputs.device)():
        outputs = torch.cat(
            [model(chunk.contiguous(memory_format=layout)) for chunk in inputs.split(batch_size)]
        )
    model.train(was_training)
    return outputs.float()


def accuracy(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    settings: TrainSettings | None = None,
) -> float:
    """Top-1 accuracy of ``model`` on the given tensors, in [0, 1]."""
    predictions = predict_logits(model, inputs, settings=settings).argmax(dim=1)
    return (predictions == targets).float().mean().item()


def weighted_loss(
    loss: TrainingLoss, states: Sequence[TermState], batch: LossBatch
) -> torch.Tensor:
    """The training loss on ``batch``: its terms' weighted sum, as in force this epoch."""
    total = torch.zeros((), device=batch.student_logits.device)
    for term, state in zip(loss.terms, states, strict=True):
        total = total + state.weight * term.fn(batch, **state.params)
    return total


def scheduled_values(
    loss: TrainingLoss, states: Sequence[TermState], lr: float
) -> dict[str, float]:
    """What an epoch report shows: the main loss's scheduled params in force, and the lr."""
    main = loss.terms[0]
    return {**{k: float(v) for k, v in states[0].params.items() if k in main.schedules}, "lr": lr}


def even_batches(n_samples: int, batch_size: int) -> int:
    """How many batches of at most about ``batch_size``: sizes then differ by at most one,
    so there is no tiny last batch for BatchNorm."""
    return max(1, math.ceil(n_samples / batch_size))


def learning_rate(settings: TrainSettings, schedule: BoundSchedule | None, epoch: int) -> float:
    """The learning rate for ``epoch``: linear warm-up, then the schedule (or constant)."""
    warmup = settings.warmup_epochs
    if epoch < warmup:
        return settings.lr * (epoch + 1) / (warmup + 1)
    if schedule is None:
        return settings.lr
    return schedule(settings.lr, epoch - warmup, settings.epochs - warmup)


@dataclass(frozen=True)
class Recipe:
    """How a model trains: its settings, its training loss and the schedule that moves
    the learning rate per epoch (after ``settings.warmup_epochs``; none: constant)."""

    settings: TrainSettings
    loss: TrainingLoss
    lr_schedule: BoundSchedule | None = None


def fit(
    models: nn.Module | Sequence[nn.Module],
    data: DataSplits,
    recipe: Recipe,
    *,
    teachers: Teachers | None = None,
    on_epoch: EpochCallback | None = None,
    poll: Callable[[], None] | None = None,
) -> FitResult:
    """Train on ``data.train`` with the recipe; evaluate on validation each epoch.

    Several ``models`` train together as peers (mutual learning): each one's loss sees the
    others' logits as ``peer_logits``. Metrics are those of the first model.

    :param teachers: cached teacher logits (indexed like ``data.train_x``) and, when the
        loss reads teacher layers, the teacher itself.
    :param on_epoch: called after each epoch; it may raise to stop training (e.g. pruning).
    :param poll: called after each step; it may raise to stop training at once (e.g. a
        pruning verdict that reached a trainer process during the epoch).
    """
    loss, lr_schedule = recipe.loss, recipe.lr_schedule
    models = [models] if isinstance(models, nn.Module) else list(models)
    settings = resolve_auto(recipe.settings, models, data.train_x[:1])
    teachers = teachers or Teachers()
    device = data.train_x.device
    augment = make_augment(settings.augment, settings.crop_padding, settings.seed + 1, device)
    per_batch_teachers = bool(teachers.models) and (
        augment is not None or bool(loss.teacher_layers) or not teachers.logits
    )
    layout = memory_format(settings, data.train_x)
    for model in (*models, *teachers.models):
        model.to(memory_format=layout)
    forward = [compiled(model) if settings.compile else model for model in models]
    autocast = mixed_precision(settings, device)
    generator = torch.Generator().manual_seed(settings.seed)
    trained = nn.ModuleList([*models, *loss.modules])
    optimizer = make_optimizer([(trained.parameters(), settings)])
    n_train = len(data.train_y)
    n_batches = even_batches(n_train, settings.batch_size)
    val_accuracy = math.nan
    callback_time = 0.0
    started = time.perf_counter()
    with (
        FeatureTap(models[0], loss.student_layers) as student_tap,
        _teacher_tap(teachers, loss) as teacher_tap,
    ):
        for epoch in range(settings.epochs):
            values = [term.at(epoch, settings.epochs) for term in loss.terms]
            lr = learning_rate(settings, lr_schedule, epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            trained.train()
            order = torch.randperm(n_train, generator=generator).to(device)
            loss_sum = torch.zeros((), device=device)
            for index in order.tensor_split(n_batches):
                inputs, targets = data.train_x[index], data.train_y[index]
                if augment is not None:
                    inputs = augment(inputs)
                inputs = inputs.contiguous(memory_format=layout)
                with autocast():
                    outputs = [model(inputs) for model in forward]
                    if per_batch_teachers:
                        with torch.no_grad():
                            teacher_logits = tuple(teacher(inputs) for teacher in teachers.models)
                    else:
                        teacher_logits = tuple(logits[index] for logits in teachers.logits)
                    value = torch.zeros((), device=device)
                    for k, logits in enumerate(outputs):
                        batch = LossBatch(
                            student_logits=logits,
                            targets=targets,
                            teacher_logits=teacher_logits[0] if teacher_logits else None,
                            student_features=student_tap.features if k == 0 else {},
                            teacher_features=teacher_tap.features if teacher_tap else {},
                            all_teacher_logits=teacher_logits,
                            peer_logits=tuple(o.detach() for j, o in enumerate(outputs) if j != k),
                        )
                        value = value + weighted_loss(loss, values, batch)
                optimizer.zero_grad(set_to_none=True)
                value.backward()
                optimizer.step()
                loss_sum += value.detach() * len(index)
                if poll is not None:
                    poll()
            train_loss = (loss_sum / n_train).item()
            if not math.isfinite(train_loss):
                raise diverged(loss, train_loss, epoch)
            val_accuracy = accuracy(models[0], data.val_x, data.val_y, settings)
            shown = scheduled_values(loss, values, lr)
            elapsed = time.perf_counter() - started - callback_time
            report = EpochReport(epoch, train_loss, val_accuracy, shown, elapsed)
            if on_epoch is not None:
                callback_started = time.perf_counter()
                on_epoch(report)
                callback_time += time.perf_counter() - callback_started
    train_time = time.perf_counter() - started - callback_time
    return FitResult(
        val_accuracy=val_accuracy,  # of the last epoch: the weights have not changed since
        test_accuracy=accuracy(models[0], data.test_x, data.test_y, settings),
        params=count_params(models[0]),
        train_time_s=train_time,
    )


def compiled(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``torch.compile`` of the model. Parameters are graph inputs, so later models of the
    same architecture (the next trial at this width) reuse the compiled code."""
    return torch.compile(model)


def _teacher_tap(teachers: Teachers, loss: TrainingLoss) -> FeatureTap | nullcontext[None]:
    """A tap on the teacher when the loss reads its layers (the teacher in eval mode)."""
    if not loss.teacher_layers:
        return nullcontext()
    if not teachers.models:
        raise ValueError("the loss reads teacher layers but no teacher model was given")
    teachers.models[0].eval()
    return FeatureTap(teachers.models[0], loss.teacher_layers)
