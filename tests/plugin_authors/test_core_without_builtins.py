"""The core runs on one third-party plugin alone: every built-in plugin disabled, a study
of the plugin's dataset, models and loss trains its teacher, its no-distillation
baselines (the core's own label loss) and its trials."""

from __future__ import annotations

import importlib.metadata
import textwrap

import optuna
import pytest

import kdsweep
from kdsweep.errors import ConfigError

BUILTINS = sorted(
    ep.name
    for ep in importlib.metadata.distribution("kdsweep").entry_points
    if ep.group == "kdsweep"
)

PLUGIN = """
import torch
import torch.nn.functional as F
from torch import nn

from kdsweep.plugin import DataSplits, LossBatch, Registry, hookimpl


def load_blobs(n: int = 600, seed: int = 0) -> DataSplits:
    # Four Gaussian blobs in 8 dimensions: learnable in a few epochs.
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=generator)
    centres = torch.randn(4, 8, generator=generator) * 3
    inputs = centres[labels] + torch.randn(n, 8, generator=generator)
    a, b = int(n * 0.6), int(n * 0.8)
    return DataSplits(inputs[:a], labels[:a], inputs[a:b], labels[a:b], inputs[b:], labels[b:], 4)


STUDENT_DEFAULT = True


def build_mlp(width, num_classes, input_shape):
    hidden = int(width)
    layers = [nn.Linear(input_shape[0], hidden), nn.ReLU(), nn.Linear(hidden, num_classes)]
    return nn.Sequential(*layers)


def logit_match(batch: LossBatch, alpha: float = 0.5) -> torch.Tensor:
    matching = F.mse_loss(batch.student_logits, batch.teacher_logits)
    return alpha * matching + (1 - alpha) * F.cross_entropy(batch.student_logits, batch.targets)


def halving(base, epoch, epochs):
    return base / (epoch + 1)


@hookimpl
def kdsweep_register_datasets(registry: Registry) -> None:
    registry.add_dataset("blobs", load_blobs, params={"n": 600, "seed": 0}, default=True)


@hookimpl
def kdsweep_register_teachers(registry: Registry) -> None:
    registry.add_teacher("mlp", build_mlp, default=True)


@hookimpl
def kdsweep_register_students(registry: Registry) -> None:
    registry.add_student("mlp", build_mlp, default=STUDENT_DEFAULT)


@hookimpl
def kdsweep_register_losses(registry: Registry) -> None:
    registry.add_loss("logit_match", logit_match, params={"alpha": 0.5}, default=True)


@hookimpl
def kdsweep_register_schedules(registry: Registry) -> None:
    registry.add_schedule("halving", halving)
"""

STUDY = """
[study]
name = "alone"
n_trials = 3
pruner = "none"
plugins = ["single.py"]

[teacher]
width = 32
epochs = 5

[student]
width = 8

[train]
epochs = 3
batch_size = 64

[schedule]
lr = "halving"

[search]
alpha = { low = 0.1, high = 0.9 }
"""


@pytest.fixture
def alone(tmp_path, monkeypatch):
    monkeypatch.setenv("KDSWEEP_DISABLE_PLUGINS", ",".join(BUILTINS))
    (tmp_path / "single.py").write_text(textwrap.dedent(PLUGIN))
    return tmp_path


def test_a_registry_from_one_plugin_holds_only_its_components(alone) -> None:
    registry = kdsweep.load_registry(["single.py"], base_dir=alone)
    assert {kind: registry.names(kind) for kind in ("dataset", "teacher", "loss")} == {
        "dataset": ["blobs"],
        "teacher": ["mlp"],
        "loss": ["logit_match"],
    }
    assert registry.default("loss") == "logit_match"


def test_a_study_runs_on_one_third_party_plugin(alone, write_study) -> None:
    path = write_study(STUDY)
    study = kdsweep.load_study(path)
    base = study.resolve()
    assert (base.dataset.name, base.teacher.model, base.loss.name) == (
        "blobs",
        "mlp",
        "logit_match",
    )
    assert "temperature" not in base.schedules  # no schedule named: none is assumed
    results = alone / "results"
    summary = kdsweep.run(study, kdsweep.RunOptions(results=str(results), device="cpu"))
    assert summary.teacher is not None and summary.teacher.val_accuracy > 0.8
    assert set(summary.baselines) == {8}  # trained with the core's label loss
    stored = optuna.load_study(study_name="alone", storage=f"sqlite:///{results / 'optuna.db'}")
    assert [t.state.name for t in stored.trials] == ["COMPLETE"] * 3
    frame = kdsweep.load_results(study, results)
    assert (frame["val_accuracy"] > 0.5).all()


def test_without_a_default_a_study_must_name_its_components(alone, write_study) -> None:
    plugin = alone / "single.py"
    plugin.write_text(
        plugin.read_text().replace("STUDENT_DEFAULT = True", "STUDENT_DEFAULT = False")
    )
    with pytest.raises(ConfigError, match=r"\[student\] model: not set, and no plugin offers"):
        kdsweep.load_study(write_study(STUDY))
