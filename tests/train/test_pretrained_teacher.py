"""A teacher from a local weights file is loaded (weights_only), evaluated and not trained."""

from __future__ import annotations

from pathlib import Path

import torch
from kdsweep_builtins.datasets import load_digits
from kdsweep_builtins.models import build_cnn

from kdsweep.cli import main
from kdsweep.train import fit


def _study(write_study, weights: str) -> Path:
    """One trial whose teacher is loaded from ``weights`` (relative to the study file)."""
    return write_study(
        name="pretrained",
        n_trials=1,
        search="",
        study={"baseline": False, "seed": None},
        teacher={"epochs": None, "weights": weights},
        student={"model": None},
        train={"epochs": 1, "batch_size": None, "lr": None},
        schedule=None,
    )


def _trained_teacher(path: Path) -> float:
    data = load_digits()
    model = fit.build_seeded(lambda: build_cnn(8, 10, data.input_shape), 0, torch.device("cpu"))
    labels = fit.TrainingLoss.of(
        lambda batch: torch.nn.functional.cross_entropy(batch.student_logits, batch.targets)
    )
    fit.fit(model, data, fit.Recipe(fit.TrainSettings(epochs=3), labels))
    torch.save(model.state_dict(), path)
    return fit.accuracy(model, data.val_x, data.val_y)


def test_teacher_weights_are_loaded_not_trained(tmp_path, capsys, write_study) -> None:
    val_accuracy = _trained_teacher(tmp_path / "teacher.pt")
    study = _study(write_study, "teacher.pt")  # relative to the study file
    assert main(["run", str(study), "--results", str(tmp_path / "r")]) == 0
    assert f"teacher: val {val_accuracy:.4f}" in capsys.readouterr().err
    assert not (tmp_path / "r" / "cache" / "teachers").exists()


def test_incompatible_weights_fail_before_training(tmp_path, capsys, write_study) -> None:
    torch.save(build_cnn(4, 10, (1, 8, 8)).state_dict(), tmp_path / "other.pt")
    study = _study(write_study, "other.pt")
    assert main(["run", str(study), "--results", str(tmp_path / "r")]) == 2
    error = capsys.readouterr().err
    assert "[teacher] weights = " in error and "other.pt" in error
    assert "does not fit the model" in error
    assert not (tmp_path / "r").exists()


def test_unreadable_and_missing_weights(tmp_path, capsys, write_study) -> None:
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    study = _study(write_study, "garbage.pt")
    assert main(["run", str(study), "--results", str(tmp_path / "r")]) == 2
    assert "unreadable checkpoint" in capsys.readouterr().err
    study = _study(write_study, "absent.pt")
    assert main(["run", str(study), "--results", str(tmp_path / "r")]) == 2
    assert "file not found" in capsys.readouterr().err
