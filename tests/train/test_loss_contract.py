"""A loss that breaks the contract fails its trial with a reason naming the loss and its
plugin, checked at the first batch; a trial whose loss goes non-finite later names the
term."""

from __future__ import annotations

import optuna
import pytest
import torch
from kdsweep_builtins.datasets import load_digits
from kdsweep_builtins.models import build_cnn
from recorded import trial_runs

from kdsweep.cli import main
from kdsweep.errors import PluginError
from kdsweep.plugin.registry import Component, Origin
from kdsweep.study.settings import TrainSettings
from kdsweep.train import fit
from kdsweep.train.device import pick_device
from kdsweep.train.loss_terms import CheckedLoss

BROKEN = """
import torch
import torch.nn.functional as F
from kdsweep.plugin import hookimpl

def per_sample(batch):
    return F.cross_entropy(batch.student_logits, batch.targets, reduction="none")

def one_element(batch):
    return F.cross_entropy(batch.student_logits, batch.targets).reshape(1)

def python_float(batch):
    return 0.5

def detached(batch):
    return F.cross_entropy(batch.student_logits, batch.targets).detach()

def not_finite(batch):
    return batch.student_logits.sum() * float("nan")

@hookimpl
def kdsweep_register_losses(registry):
    for loss in (per_sample, one_element, python_float, detached, not_finite):
        registry.add_loss(loss.__name__, loss, needs_teacher=False)
"""


@pytest.mark.parametrize(
    ("loss", "problem"),
    [
        ("per_sample", "returned a tensor of shape (359,), not a scalar"),
        ("one_element", "returned a tensor of shape (1,), not a scalar"),
        ("python_float", "returned a float, not a tensor"),
        ("detached", "returned a tensor that does not require grad"),
        ("not_finite", "returned nan at the first batch"),
    ],
)
def test_a_broken_loss_fails_its_trial_naming_loss_and_plugin(write_study, tmp_path, loss, problem):
    (tmp_path / "broken.py").write_text(BROKEN)
    path = write_study(
        n_trials=1,
        loss=loss,
        search="",
        study={"plugins": ["broken.py"], "baseline": False},
        train={"epochs": 1, "batch_size": 512},
    )
    results = tmp_path / "r"
    assert main(["run", str(path), "--results", str(results)]) == 1  # no trial finished
    (trial,) = optuna.load_study(
        study_name="tiny", storage=f"sqlite:///{results / 'optuna.db'}"
    ).trials
    assert trial.state.name == "FAIL"
    reason = trial.user_attrs["fail_reason"]
    assert f"main loss '{loss}' (plugin 'broken' (local file {tmp_path / 'broken.py'}))" in reason
    assert problem in reason
    (run,) = trial_runs(f"sqlite:///{results / 'mlflow.db'}", "tiny")
    assert problem in run.data.tags["kdsweep.reason"]


def test_a_loss_that_goes_non_finite_later_names_the_term() -> None:
    calls = []

    def fine_then_nan(batch):
        calls.append(1)
        value = torch.nn.functional.cross_entropy(batch.student_logits, batch.targets)
        return value if len(calls) < 3 else value * float("nan")

    origin = Origin("shaky", "shaky-dist", "2.0")
    component = Component("loss", "shaky_loss", fine_then_nan, origin)
    loss = fit.TrainingLoss((fit.LossTerm(CheckedLoss(component, fine_then_nan, "main loss")),))
    data = load_digits()
    model = fit.build_seeded(lambda: build_cnn(2, 10, data.input_shape), 0, pick_device("cpu"))
    with pytest.raises(fit.DivergedError) as info:
        fit.fit(model, data, fit.Recipe(TrainSettings(epochs=2, batch_size=256), loss))
    message = str(info.value)
    assert message.startswith("training loss is nan at epoch 0")
    assert "not finite: main loss 'shaky_loss' (plugin 'shaky' (shaky-dist 2.0))" in message


def test_a_term_never_called_alone_is_not_named_non_finite() -> None:
    """A fused group's batched form computes the term for every member; its per-member
    callable never ran, so a diverged member does not blame it."""
    component = Component("loss", "kd_like", lambda batch: batch, Origin("p", "d", "1"))
    checked = CheckedLoss(component, lambda batch: batch, "main loss")
    assert checked.non_finite_label() == ""
    checked.last = torch.tensor(float("nan"))
    assert checked.non_finite_label() == "main loss 'kd_like' (plugin 'p' (d 1))"


def test_the_first_batch_check_is_one_error_not_a_pytorch_message() -> None:
    component = Component("loss", "vector", lambda batch: batch, Origin("p", "d", "1"))
    checked = CheckedLoss(component, lambda batch: torch.ones(3, requires_grad=True), "added term")
    with pytest.raises(
        PluginError,
        match=r"added term 'vector' \(plugin 'p' \(d 1\)\) returned a tensor of shape \(3,\)",
    ):
        checked(None)
