"""Fused trials: k students of one architecture trained as one batched model.

Each member keeps its own parameters, optimizer param group (learning rate, momentum,
weight decay), loss params (temperature, alpha, ...) and schedules. Per step the members'
parameters are stacked and one ``torch.func.vmap`` of ``functional_call`` runs them all,
so k small models cost about one call per layer instead of k. Gradients flow back
through the stack into each member's own parameters, so the optimizer sees exactly what
it would see for k separate models; a member's metrics equal those of training it alone
with the same seed (within float tolerance: batched kernels round differently). On the
CPU, students that are plain stacks of layers run as one grouped network instead
(:mod:`kdsweep.train.grouped`): ``vmap`` there runs k small kernels and saves nothing.

The members' losses are computed in one call per term when the loss gives a batched form
(:mod:`kdsweep.train.member_losses`), else one call per member.

A member whose epoch callback raises (pruning) or whose loss diverges leaves the group
with that exception as its result; the others go on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, vmap

from kdsweep.plugin.types import DataSplits
from kdsweep.study.settings import TrainSettings
from kdsweep.train.augment import make_augment
from kdsweep.train.device import make_optimizer, memory_format, mixed_precision, resolve_auto
from kdsweep.train.fit import (
    BoundSchedule,
    EpochCallback,
    EpochReport,
    FitResult,
    Recipe,
    Teachers,
    TrainingLoss,
    count_params,
    diverged,
    even_batches,
    learning_rate,
    scheduled_values,
    weighted_loss,
)
from kdsweep.train.grouped import GroupedModels, groupable
from kdsweep.train.member_losses import batched_losses, loss_batch

# Settings every member of a group must share: they shape the model, the batches or the
# optimizer's kind. The rest (lr, momentum, weight decay, warm-up, seed) may differ.
SHARED_TRAIN_SETTINGS = (
    "epochs",
    "batch_size",
    "augment",
    "crop_padding",
    "optimizer",
    "precision",
    "memory_format",
    "compile",
)


class StackedModels:
    """Several models of one architecture called as one: ``(k, B, ...) -> (k, B, C)``."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        self.skeleton = models[0]
        self.names = [name for name, _ in models[0].named_parameters()]
        self.members = [list(model.parameters()) for model in models]
        self.buffer_names = [name for name, _ in models[0].named_buffers()]
        self.buffers = {
            name: torch.stack([dict(model.named_buffers())[name] for model in models])
            for name in self.buffer_names
        }
        self.models = list(models)

    def __call__(self, inputs: torch.Tensor, shared: bool) -> torch.Tensor:
        """Every member's output; ``inputs`` is one batch for all (``shared``) or one per
        member stacked on the first dimension."""
        params = {
            name: torch.stack([member[i] for member in self.members])
            for i, name in enumerate(self.names)
        }

        def one(p: dict, b: dict, x: torch.Tensor) -> torch.Tensor:
            return functional_call(self.skeleton, (p, b), (x,))

        batched = vmap(one, in_dims=(0, 0, None if shared else 0), randomness="different")
        return batched(params, self.buffers, inputs)

    @property
    def training(self) -> bool:
        """Whether the members are in train mode."""
        return self.skeleton.training

    def train(self, mode: bool = True) -> None:
        """Train or eval mode (BatchNorm, dropout) for every member."""
        self.skeleton.train(mode)

    def keep(self, positions: Sequence[int]) -> None:
        """Keep only the members at ``positions`` (in the current order)."""
        self.members = [self.members[p] for p in positions]
        self.models = [self.models[p] for p in positions]
        rows = list(positions)
        self.buffers = {name: value[rows] for name, value in self.buffers.items()}

    def write_back(self) -> None:
        """Copy the stacked buffers (BatchNorm statistics) into each member model."""
        with torch.no_grad():
            for row, model in enumerate(self.models):
                own = dict(model.named_buffers())
                for name, value in self.buffers.items():
                    own[name].copy_(value[row])


Group = StackedModels | GroupedModels  # k members called as one: (k, B, ...) -> (k, B, C)


@torch.no_grad()
def accuracies(
    group: Group,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    settings: TrainSettings,
    batch_size: int = 2048,
) -> list[float]:
    """Each member's top-1 accuracy on the given tensors, read from the device once."""
    was_training = group.training
    group.train(False)
    layout = memory_format(settings, inputs)
    correct = torch.zeros(len(group.models), device=inputs.device)
    with mixed_precision(settings, inputs.device)():
        for chunk, labels in zip(inputs.split(batch_size), targets.split(batch_size), strict=True):
            logits = group(chunk.contiguous(memory_format=layout), shared=True)
            correct += (logits.argmax(dim=2) == labels).sum(dim=1)
    group.train(was_training)
    return (correct / len(targets)).tolist()


def grouped_or_stacked(models: Sequence[nn.Module], sample: torch.Tensor) -> Group:
    """The members as one: grouped layers on the CPU where the students are plain stacks
    of layers and the grouped network gives each member's own outputs on ``sample``
    (checked), else ``vmap`` over their stacked parameters."""
    if sample.device.type == "cpu" and groupable(models[0]):
        grouped = GroupedModels(models)
        if _gives_own_outputs(grouped, models, sample):
            return grouped
    return StackedModels(models)


@torch.no_grad()
def _gives_own_outputs(group: Group, models: Sequence[nn.Module], sample: torch.Tensor) -> bool:
    group.train(False)
    together = group(sample, shared=True)
    alone = torch.stack([model(sample) for model in models])
    group.train(True)
    return together.shape == alone.shape and torch.allclose(together, alone, rtol=1e-4, atol=1e-5)


@dataclass(frozen=True)
class _Stream:
    """A seeded stream of batches: the shuffling order and the augmentation."""

    generator: torch.Generator
    augment: Callable[[torch.Tensor], torch.Tensor] | None

    @classmethod
    def of(cls, settings: TrainSettings, device: torch.device) -> _Stream:
        """The stream :func:`~kdsweep.engine.fit` draws for ``settings``."""
        return cls(
            torch.Generator().manual_seed(settings.seed),
            make_augment(settings.augment, settings.crop_padding, settings.seed + 1, device),
        )


@dataclass
class _Member:
    """One trial inside the group."""

    position: int  # in the caller's lists
    settings: TrainSettings
    loss: TrainingLoss
    lr_schedule: BoundSchedule | None
    on_epoch: EpochCallback | None
    stream: _Stream
    train_time: float = 0.0
    val_accuracy: float = math.nan


def check_group(settings: Sequence[TrainSettings]) -> None:
    """Members must agree on :data:`SHARED_TRAIN_SETTINGS`; else a ValueError naming one."""
    for name in SHARED_TRAIN_SETTINGS:
        values = {getattr(s, name) for s in settings}
        if len(values) > 1:
            raise ValueError(f"fused trials must share train.{name}, got {sorted(values)}")


def fit_group(
    models: Sequence[nn.Module],
    data: DataSplits,
    recipes: Sequence[Recipe],
    *,
    teachers: Teachers | None = None,
    on_epochs: Sequence[EpochCallback | None] | None = None,
    grouped: bool = True,
) -> list[FitResult | Exception]:
    """Train the models together, each with its own recipe (settings, loss, lr schedule)
    and callback; the result of each is its :class:`FitResult`, or the exception that
    ended it (a callback's, e.g. pruning, or :class:`DivergedError`). With ``grouped``
    (the default), the CPU runs plain-stack students as one grouped network
    (:mod:`kdsweep.train.grouped`); otherwise, and elsewhere, ``vmap`` runs them.

    The training losses must read no layers and hold no modules (response-based losses).
    ``train_time_s`` is each member's share: the group's time per epoch split evenly
    among the members still training in that epoch.
    """
    settings = [recipe.settings for recipe in recipes]
    check_group(settings)
    if any(r.loss.student_layers or r.loss.teacher_layers or r.loss.modules for r in recipes):
        raise ValueError("fused trials need losses that read no layers and hold no modules")
    count = len(models)
    teachers = teachers or Teachers()
    device = data.train_x.device
    first = resolve_auto(settings[0], models, data.train_x[:1])
    # One batch stream for all when every member draws the same one (same seed).
    shared = len({s.seed for s in settings}) == 1
    shared_stream = _Stream.of(first, device)
    members = [
        _Member(
            position=k,
            settings=s,
            loss=recipes[k].loss,
            lr_schedule=recipes[k].lr_schedule,
            on_epoch=on_epochs[k] if on_epochs else None,
            stream=shared_stream if shared else _Stream.of(s, device),
        )
        for k, s in enumerate(settings)
    ]
    per_batch_teachers = bool(teachers.models) and (first.augment != "none" or not teachers.logits)
    layout = memory_format(first, data.train_x)
    autocast = mixed_precision(first, device)
    for model in (*models, *teachers.models):
        model.to(memory_format=layout)
    stacked = grouped_or_stacked(models, data.train_x[:4]) if grouped else StackedModels(models)
    optimizer = make_optimizer([(m.parameters(), s) for m, s in zip(models, settings, strict=True)])
    results: list[FitResult | Exception | None] = [None] * count
    n_train = len(data.train_y)
    n_batches = even_batches(n_train, first.batch_size)
    for epoch in range(first.epochs):
        epoch_started = time.perf_counter()
        values = [[term.at(epoch, first.epochs) for term in m.loss.terms] for m in members]
        together = batched_losses([m.loss for m in members], values, device) if shared else None
        rates = [learning_rate(m.settings, m.lr_schedule, epoch) for m in members]
        for member, lr in zip(members, rates, strict=True):
            optimizer.param_groups[member.position]["lr"] = lr
        stacked.train()
        streams = [shared_stream] if shared else [m.stream for m in members]
        orders = [torch.randperm(n_train, generator=s.generator).to(device) for s in streams]
        batches = [order.tensor_split(n_batches) for order in orders]
        loss_sums = torch.zeros(len(members), device=device)
        for step in range(n_batches):
            indices = [batch[step] for batch in batches]
            inputs = []
            for stream, index in zip(streams, indices, strict=True):
                x = data.train_x[index]
                inputs.append(stream.augment(x) if stream.augment is not None else x)
            with autocast():
                x = inputs[0] if shared else torch.stack(inputs)
                outputs = stacked(x.contiguous(memory_format=layout), shared)
                teacher_logits = _teacher_logits(teachers, per_batch_teachers, inputs, indices)
                targets = [data.train_y[index] for index in indices]
                if together is not None:  # one call per term for every member
                    per_member = together(loss_batch(outputs, targets[0], teacher_logits[0]))
                else:
                    losses = []
                    for row, member in enumerate(members):
                        at = 0 if shared else row
                        batch = loss_batch(outputs[row], targets[at], teacher_logits[at])
                        losses.append(weighted_loss(member.loss, values[row], batch))
                    per_member = torch.stack(losses)
            optimizer.zero_grad(set_to_none=True)
            per_member.sum().backward()
            optimizer.step()
            loss_sums += per_member.detach() * len(indices[0])
        train_losses = (loss_sums / n_train).tolist()
        val_accuracies = accuracies(stacked, data.val_x, data.val_y, first)
        elapsed = time.perf_counter() - epoch_started
        staying = []
        for row, member in enumerate(members):
            member.train_time += elapsed / len(members)
            member.val_accuracy = val_accuracies[row]
            outcome = _end_of_epoch(member, epoch, train_losses[row], values[row], rates[row])
            if outcome is None:
                staying.append(row)
            else:
                results[member.position] = outcome
        if len(staying) < len(members):
            stacked.keep(staying)
            members = [members[row] for row in staying]
        if not members:
            break
    if members:
        stacked.write_back()
        tests = accuracies(stacked, data.test_x, data.test_y, first)
        for row, member in enumerate(members):
            results[member.position] = FitResult(
                val_accuracy=member.val_accuracy,
                test_accuracy=tests[row],
                params=count_params(models[member.position]),
                train_time_s=member.train_time,
            )
    assert all(r is not None for r in results), "every member ends with a result"
    return results  # type: ignore[return-value]


def _end_of_epoch(
    member: _Member,
    epoch: int,
    train_loss: float,
    values: Sequence[Mapping[str, Any]],
    lr: float,
) -> Exception | None:
    """Report the epoch to the member's callback; the exception that ends it, if any."""
    if not math.isfinite(train_loss):
        return diverged(member.loss, train_loss, epoch)
    if member.on_epoch is None:
        return None
    shown = scheduled_values(member.loss, values, lr)
    report = EpochReport(epoch, train_loss, member.val_accuracy, shown, member.train_time)
    try:
        member.on_epoch(report)
    except Exception as exc:  # pruning (or a failing callback) ends this member only
        return exc
    return None


def _teacher_logits(
    teachers: Teachers,
    per_batch: bool,
    inputs: Sequence[torch.Tensor],
    indices: Sequence[torch.Tensor],
) -> list[tuple[torch.Tensor, ...]]:
    """Each batch stream's teacher logits: cached rows, or the teachers run on the batch."""
    if per_batch:
        with torch.no_grad():
            return [tuple(teacher(x) for teacher in teachers.models) for x in inputs]
    return [tuple(logits[index] for logits in teachers.logits) for index in indices]
