from __future__ import annotations

import pytest
import torch
from kdsweep_builtins.datasets import load_digits
from kdsweep_builtins.losses import cross_entropy_loss, kd_loss
from kdsweep_builtins.models import build_cnn, build_mlp

from kdsweep.study.settings import TrainSettings
from kdsweep.train import device, fit

DATA = load_digits()
CPU = torch.device("cpu")


def _fit(seed: int, on_epoch=None, epochs: int = 3, width: int = 4, poll=None) -> fit.FitResult:
    model = fit.build_seeded(lambda: build_cnn(width, 10, DATA.input_shape), seed, CPU)
    settings = TrainSettings(epochs=epochs, batch_size=64, lr=0.05, seed=seed)
    return fit.fit(
        model,
        DATA,
        fit.Recipe(settings, fit.TrainingLoss.of(cross_entropy_loss)),
        on_epoch=on_epoch,
        poll=poll,
    )


def test_digits_split_is_stratified_and_disjoint() -> None:
    sizes = (len(DATA.train_y), len(DATA.val_y), len(DATA.test_y))
    assert sum(sizes) == 1797
    assert sizes[1] == sizes[2] == 360
    for labels in (DATA.train_y, DATA.val_y, DATA.test_y):
        counts = torch.bincount(labels, minlength=10).float()
        assert counts.min() / counts.max() > 0.85
    assert DATA.input_shape == (1, 8, 8)
    assert abs(DATA.train_x.mean().item()) < 1e-5  # standardised on training statistics


def test_training_learns_digits() -> None:
    result = _fit(seed=0, epochs=8, width=8)
    assert result.val_accuracy > 0.85  # chance is 0.1
    assert result.params == sum(p.numel() for p in build_cnn(8, 10, (1, 8, 8)).parameters())
    assert result.train_time_s > 0


def test_poll_runs_after_every_step_and_stops_training_when_it_raises() -> None:
    steps_per_epoch = fit.even_batches(len(DATA.train_y), 64)
    steps: list[int] = []
    epochs: list[int] = []

    def poll() -> None:
        steps.append(len(steps))
        if len(steps) == steps_per_epoch + 3:
            raise RuntimeError("stop now")

    with pytest.raises(RuntimeError, match="stop now"):
        _fit(seed=0, on_epoch=lambda r: epochs.append(r.epoch), poll=poll)
    assert len(steps) == steps_per_epoch + 3  # stopped in the second epoch, at once
    assert epochs == [0]


def test_a_trial_is_reproducible_from_its_seed_on_cpu() -> None:
    first_losses, second_losses, other_losses = [], [], []
    first = _fit(seed=7, on_epoch=lambda r: first_losses.append(r.train_loss))
    second = _fit(seed=7, on_epoch=lambda r: second_losses.append(r.train_loss))
    _fit(seed=8, on_epoch=lambda r: other_losses.append(r.train_loss))
    assert first_losses == second_losses
    assert (first.val_accuracy, first.test_accuracy) == (second.val_accuracy, second.test_accuracy)
    assert other_losses != first_losses  # the seed, not something else, fixes the run


def test_scheduled_values_and_learning_rate_are_reported_per_epoch() -> None:
    teacher = fit.build_seeded(lambda: build_mlp(16, 10, DATA.input_shape), 0, CPU)
    logits = fit.predict_logits(teacher, DATA.train_x)
    student = fit.build_seeded(lambda: build_mlp(8, 10, DATA.input_shape), 0, CPU)
    halving = lambda base, epoch, epochs: base / (epoch + 1)  # noqa: E731
    term = fit.LossTerm(kd_loss, {"temperature": 8.0, "alpha": 0.5}, 1.0, {"temperature": halving})
    reports: list[fit.EpochReport] = []
    settings = TrainSettings(epochs=3, batch_size=256, lr=0.1, warmup_epochs=1)
    fit.fit(
        student,
        DATA,
        fit.Recipe(settings, fit.TrainingLoss((term,)), lr_schedule=halving),
        teachers=fit.Teachers(logits=(logits,)),
        on_epoch=reports.append,
    )
    assert [r.values for r in reports] == [
        {"temperature": 8.0, "lr": 0.05},  # warm-up: lr * 1 / 2
        {"temperature": 4.0, "lr": 0.1},  # the lr schedule starts after the warm-up
        {"temperature": 8.0 / 3, "lr": 0.05},
    ]


def test_teacher_logits_reach_the_loss_indexed_like_the_batch() -> None:
    seen = []

    def spy(batch, temperature: float = 1.0):
        seen.append(torch.equal(batch.teacher_logits, batch.targets.float().unsqueeze(1)))
        return cross_entropy_loss(batch)

    fake_teacher = DATA.train_y.float().unsqueeze(1)  # "logits" that encode the label
    model = fit.build_seeded(lambda: build_mlp(4, 10, DATA.input_shape), 0, CPU)
    fit.fit(
        model,
        DATA,
        fit.Recipe(TrainSettings(epochs=1, batch_size=100), fit.TrainingLoss.of(spy)),
        teachers=fit.Teachers(logits=(fake_teacher,)),
    )
    assert seen and all(seen)


def test_batches_are_evenly_sized() -> None:
    sizes = []

    def spy(batch):
        sizes.append(len(batch.targets))
        return cross_entropy_loss(batch)

    model = fit.build_seeded(lambda: build_cnn(2, 10, DATA.input_shape), 0, CPU)
    settings = TrainSettings(epochs=1, batch_size=1076)
    fit.fit(model, DATA, fit.Recipe(settings, fit.TrainingLoss.of(spy)))
    assert sum(sizes) == len(DATA.train_y) == 1077
    assert max(sizes) - min(sizes) <= 1  # 1077 / 1076 would otherwise leave a batch of 1


def test_pick_device() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert device.pick_device("auto").type == expected
    assert device.pick_device("cpu").type == "cpu"
