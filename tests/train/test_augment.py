from __future__ import annotations

import torch
from kdsweep_builtins.datasets import load_digits
from torch import nn

from kdsweep.study.settings import TrainSettings
from kdsweep.train import fit
from kdsweep.train.augment import make_augment, random_crop, random_flip


def test_random_crop_is_a_window_of_the_padded_image() -> None:
    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).reshape(2, 3, 5, 5) + 1
    crops = random_crop(x, 2, torch.Generator().manual_seed(0))
    assert crops.shape == x.shape and crops.is_contiguous()
    padded = nn.functional.pad(x, (2, 2, 2, 2))
    for b in range(2):
        windows = [padded[b, :, i : i + 5, j : j + 5] for i in range(5) for j in range(5)]
        assert any(torch.equal(crops[b], w) for w in windows)


def test_random_flip_mirrors_about_half() -> None:
    x = torch.randn(400, 1, 2, 3)
    flipped = random_flip(x, torch.Generator().manual_seed(0))
    mirrored = [torch.equal(f, o.flip(2)) for f, o in zip(flipped, x, strict=True)]
    kept = [torch.equal(f, o) for f, o in zip(flipped, x, strict=True)]
    assert all(m or k for m, k in zip(mirrored, kept, strict=True))
    assert 150 < sum(mirrored) < 250


def test_augmentation_is_seeded() -> None:
    x = torch.randn(8, 3, 6, 6)
    first = make_augment("crop_flip", 2, 5, torch.device("cpu"))(x)
    again = make_augment("crop_flip", 2, 5, torch.device("cpu"))(x)
    other = make_augment("crop_flip", 2, 6, torch.device("cpu"))(x)
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert make_augment("none", 4, 0, torch.device("cpu")) is None


def test_teacher_sees_the_augmented_view_of_the_student() -> None:
    """With augmentation the teacher runs on each batch: a teacher identical to the student
    gives identical logits only if it saw exactly the same (augmented) inputs."""
    data = load_digits()
    torch.manual_seed(0)
    student = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    teacher.load_state_dict(student.state_dict())
    same_view = []

    def spy(batch):
        same_view.append(torch.allclose(batch.student_logits, batch.teacher_logits))
        return batch.student_logits.sum() * 0  # keeps the weights (and so the check) fixed

    stale_logits = fit.predict_logits(teacher, data.train_x)
    fit.fit(
        student,
        data,
        fit.Recipe(
            TrainSettings(epochs=1, batch_size=200, augment="crop_flip", weight_decay=0.0),
            fit.TrainingLoss.of(spy),
        ),
        teachers=fit.Teachers(models=(teacher.eval(),), logits=(stale_logits,)),
    )
    assert same_view and all(same_view)
