"""A trial stopped early keeps what it reached: its last epoch's values as final metrics
in MLflow, ``pruned_at_epoch`` and the reason in ``load_results``, its curve in
``load_curves``."""

from __future__ import annotations

import math

import optuna
from mlflow import MlflowClient

import kdsweep
from kdsweep.cli import main

LATE_NAN = """
from kdsweep.plugin import hookimpl

CALLS = [0]

def late_nan(batch):
    CALLS[0] += 1  # finite for the first epoch (9 batches), then NaN
    loss = batch.student_logits.logsumexp(dim=1).mean()
    return loss if CALLS[0] <= 12 else loss * float("nan")

@hookimpl
def kdsweep_register_losses(registry):
    registry.add_loss("late_nan", late_nan, needs_teacher=False)
"""


def test_a_diverged_trial_ends_pruned_with_its_last_epoch(write_study, tmp_path) -> None:
    (tmp_path / "late.py").write_text(LATE_NAN)
    study = write_study(
        n_trials=1,
        loss="late_nan",
        search="",
        study={"plugins": ["late.py"], "baseline": False},
        train={"epochs": 3},
    )
    results = tmp_path / "r"
    assert main(["run", str(study), "--results", str(results)]) == 0
    (trial,) = optuna.load_study(
        study_name="tiny", storage=f"sqlite:///{results / 'optuna.db'}"
    ).trials
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert trial.intermediate_values.keys() == {0}
    frame = kdsweep.load_results(study, results)
    row = frame.loc[trial.number]
    assert row["pruned_at_epoch"] == 0 and row["val_accuracy"] == trial.intermediate_values[0]
    assert "training loss is nan at epoch 1" in row["prune_reason"]
    assert math.isnan(row.get("test_accuracy", math.nan))
    run = MlflowClient(f"sqlite:///{results / 'mlflow.db'}").get_run(
        trial.user_attrs["mlflow_run_id"]
    )
    assert run.info.status == "KILLED"
    assert run.data.metrics["pruned_at_epoch"] == 0
    assert run.data.metrics["val_accuracy"] == round(trial.intermediate_values[0], 4)
    curves = kdsweep.load_curves(study, results)
    assert curves.to_dict("records") == [
        {"trial": 0, "state": "PRUNED", "epoch": 0, "val_accuracy": trial.intermediate_values[0]}
    ]
