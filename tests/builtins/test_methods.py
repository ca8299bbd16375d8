"""Every registered loss and schedule runs a real 2-trial study on digits."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from recorded import trial_runs
from study_files import write_tiny_study

from kdsweep.cli import main
from kdsweep.plugin.manager import load_registry

REGISTRY = load_registry()
LAYER_SETTINGS = {"at": {"student_layer": "block2, block3", "teacher_layer": "block2, block3"}}

# Two teachers (multi-teacher losses read the second), no baselines, no pruning.
METHOD_STUDY = {
    "study": {"baseline": False, "seed": None},
    "teacher": {"epochs": 2, "extra": [{"model": "mlp", "width": 16}]},
    "train": {"epochs": 2, "batch_size": 256, "lr": None},
}


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("results")


def _run(results: Path, name: str, loss: str, search: str = "", **fields) -> None:
    path = write_tiny_study(
        results / f"{name}.toml",
        name=name,
        n_trials=2,
        loss=loss,
        search=search,
        **{"schedule": None, **METHOD_STUDY, **fields},
    )
    assert main(["run", str(path), "--results", str(results)]) == 0
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{results / 'optuna.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert all(0.0 <= t.value <= 1.0 for t in study.trials)


@pytest.mark.parametrize("loss", REGISTRY.names("loss"))
def test_every_loss_runs_a_study(results, loss: str) -> None:
    searched = [p for p in ("temperature", "alpha") if p in REGISTRY.get("loss", loss).params]
    search = "\n".join(f"{p} = {{ low = 0.5, high = 0.9 }}" for p in searched)
    _run(results, f"loss-{loss}", loss, search, loss_params=LAYER_SETTINGS.get(loss, {}))


@pytest.mark.parametrize("schedule", REGISTRY.names("schedule"))
def test_every_schedule_runs_a_study(results, schedule: str) -> None:
    floor = {"floor": 1.0} if "floor" in REGISTRY.get("schedule", schedule).params else {}
    tables = {"temperature": {**floor, "name": schedule}, "lr": schedule, "alpha": schedule}
    _run(results, f"schedule-{schedule}", "kd", schedule=tables)


def test_losses_combine_with_weighted_terms(results) -> None:
    added = {
        "loss.add.fitnet": {"weight": 10.0, "student_layer": "block3", "teacher_layer": "block3"},
        "loss.add.rkd": {"weight": 0.5},
    }
    search = '"loss.add.fitnet.weight" = { low = 1.0, high = 100.0, log = true }'
    _run(results, "combined", "kd", search, **added)
    for run in trial_runs(f"sqlite:///{results / 'mlflow.db'}", "combined"):
        assert run.data.tags["kdsweep.loss.add.fitnet.plugin"] == "builtin-feature"
        assert run.data.tags["kdsweep.loss.add.rkd"] == "rkd"
        assert float(run.data.params["loss.add.rkd.weight"]) == 0.5
        assert run.data.params["loss.add.fitnet.student_layer"] == "block3"


def test_dkd_with_the_authors_warm_up_runs_and_ramps_beta_in(results) -> None:
    """studies/dkd.toml's schedules on a tiny run: beta = base * min((epoch + 1) / 2, 1)."""
    warm_up = {"name": "linear_warmup", "warmup": 2}
    _run(
        results,
        "dkd-warmup",
        "dkd",
        "beta = { low = 2.0, high = 8.0 }",
        train={"epochs": 3, "batch_size": 256, "lr": None},
        schedule={"loss.alpha": warm_up, "loss.beta": warm_up},
    )
    client = MlflowClient(tracking_uri=f"sqlite:///{results / 'mlflow.db'}")
    for run in trial_runs(f"sqlite:///{results / 'mlflow.db'}", "dkd-warmup"):
        beta = float(run.data.params["loss.beta"])
        history = sorted(
            client.get_metric_history(run.info.run_id, "epoch/beta"), key=lambda m: m.step
        )
        assert [m.value for m in history] == pytest.approx([beta / 2, beta, beta])
        assert run.data.params["schedule.loss.beta.name"] == "linear_warmup"
