"""A real study through the CLI: Optuna in SQLite, MLflow in SQLite, real training."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from recorded import weight_files

from kdsweep.cli import main
from kdsweep.run.display import Display
from kdsweep.run.locations import RunOptions, StudyLocations
from kdsweep.search.trial import TrialHandle, TrialPruned
from kdsweep.study.load import load_study

SEARCH = """
temperature = { low = 1.0, high = 8.0, log = true }
alpha = { low = 0.0, high = 1.0 }
width = { choices = [2, 4] }
"""


def _runs_by_role(tracking_uri: str, name: str) -> tuple[MlflowClient, dict[str, list]]:
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(name)
    runs: dict[str, list] = {}
    for run in client.search_runs([experiment.experiment_id]):
        runs.setdefault(run.data.tags["kdsweep.role"], []).append(run)
    return client, runs


def test_study_records_every_trial_and_resumes(write_study, tmp_path: Path) -> None:
    path = write_study(n_trials=4, search=SEARCH)
    results = tmp_path / "results"
    assert main(["run", str(path), "--results", str(results)]) == 0

    uri = f"sqlite:///{results / 'mlflow.db'}"
    client, runs = _runs_by_role(uri, "tiny")
    (study_run,) = runs["study"]
    assert study_run.info.status == "FINISHED"
    assert study_run.data.metrics["teacher_val_accuracy"] > 0.5
    assert len(runs["teacher"]) == 1
    assert sorted(float(r.data.params["student.width"]) for r in runs["baseline"]) == [2.0, 4.0]
    trials = runs["trial"]
    assert sorted(int(r.data.tags["kdsweep.trial_number"]) for r in trials) == [0, 1, 2, 3]
    for run in trials:
        assert run.data.tags["mlflow.parentRunId"] == study_run.info.run_id
        assert run.info.status == "FINISHED"
        assert run.data.tags["kdsweep.loss"] == "kd"
        assert run.data.tags["kdsweep.loss.plugin"] == "builtin-losses"
        assert run.data.tags["kdsweep.student.version"] == "0.1.0"
        params = run.data.params
        assert {
            "loss.temperature",
            "loss.alpha",
            "student.width",
            "train.lr",
            "teacher.width",
            "schedule.temperature.name",
            "data.dataset",
        } <= set(params)
        metrics = run.data.metrics
        for name in ("val_accuracy", "test_accuracy", "params", "train_time_s", "kd_gain"):
            assert name in metrics
        assert metrics["params"] == {2: 304, 4: 1030}[int(params["student.width"])]
        history = client.get_metric_history(run.info.run_id, "epoch/temperature")
        temperatures = [m.value for m in sorted(history, key=lambda m: m.step)]
        assert len(temperatures) == 2  # one value per epoch
        assert temperatures[0] == pytest.approx(float(params["loss.temperature"]))
        assert temperatures[-1] == pytest.approx(1.0)  # the linear schedule's floor
        for series in ("epoch/val_accuracy", "epoch/train_loss"):
            assert len(client.get_metric_history(run.info.run_id, series)) == 2
        for series in ("epoch/alpha", "epoch/lr"):  # constant: their params hold them
            assert client.get_metric_history(run.info.run_id, series) == []
        assert run.data.tags["kdsweep.schedule.temperature"] == "linear"
        assert run.data.tags["kdsweep.schedule.temperature.plugin"] == "builtin-schedules"
        assert "kdsweep.schedule.lr" not in run.data.tags  # no lr schedule: the lr stays

    storage = f"sqlite:///{results / 'optuna.db'}"
    study = optuna.load_study(study_name="tiny", storage=storage)
    run_ids = {t.user_attrs["mlflow_run_id"] for t in study.trials}
    assert run_ids == {r.info.run_id for r in trials}

    teacher_files = list((results / "cache" / "teachers").glob("*.pt"))
    assert len(teacher_files) == 1
    teacher_stamp = teacher_files[0].stat().st_mtime_ns

    # Same command again: nothing is repeated or duplicated.
    assert main(["run", str(path), "--results", str(results)]) == 0
    _, again = _runs_by_role(uri, "tiny")
    assert [len(again[r]) for r in ("study", "teacher", "baseline", "trial")] == [1, 1, 2, 4]
    assert teacher_files[0].stat().st_mtime_ns == teacher_stamp  # loaded, not retrained

    # A larger total adds only the missing trials, under the same parent run.
    assert main(["run", str(path), "--results", str(results), "--n-trials", "5"]) == 0
    _, more = _runs_by_role(uri, "tiny")
    assert len(more["trial"]) == 5 and len(more["study"]) == 1
    assert len(optuna.load_study(study_name="tiny", storage=storage).trials) == 5


def test_a_failing_plugin_fails_its_trial_not_the_study(write_study, tmp_path, capsys) -> None:
    (tmp_path / "exploding.py").write_text(
        "from kdsweep.plugin import hookimpl\n\n"
        "def explode(batch, temperature=4.0):\n"
        "    raise FloatingPointError('loss is nan')\n\n"
        "@hookimpl\n"
        "def kdsweep_register_losses(registry):\n"
        "    registry.add_loss('explode', explode, params={'temperature': 4.0})\n"
    )
    path = write_study(
        n_trials=2,
        loss="explode",
        search="",
        study={"plugins": ["exploding.py"], "baseline": False},
    )
    results = tmp_path / "results"
    assert main(["run", str(path), "--results", str(results)]) == 1  # no trial finished
    assert "none of the 2 trials this run started finished" in capsys.readouterr().err
    _, runs = _runs_by_role(f"sqlite:///{results / 'mlflow.db'}", "tiny")
    assert len(runs["trial"]) == 2
    for run in runs["trial"]:
        assert run.info.status == "FAILED"
        assert run.data.tags["kdsweep.trial_state"] == "FAIL"
        reason = run.data.tags["kdsweep.reason"]
        assert "loss 'explode' (plugin 'exploding'" in reason and "loss is nan" in reason
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{results / 'optuna.db'}")
    assert [t.state.name for t in study.trials] == ["FAIL", "FAIL"]


class _AlwaysPrune(TrialHandle):
    def report(self, step: int, value: float) -> None:
        raise TrialPruned(f"pruned at epoch {step}")


def test_pruned_trial_ends_its_run_killed_with_the_reason(write_study, tmp_path: Path) -> None:
    from kdsweep.run.trials import TrialRuns
    from kdsweep.track.tracker import Tracker
    from kdsweep.train.cache import ModelCache
    from kdsweep.train.device import pick_device
    from kdsweep.train.trainer import StudyTrainer

    study = load_study(write_study(search=""))
    locations = StudyLocations.of(study, RunOptions(results=str(tmp_path / "r")))
    tracker = Tracker(locations.tracking_uri, "tiny")
    trainer = StudyTrainer(study, pick_device("cpu"), ModelCache(tmp_path / "cache"))
    quiet = Display()
    quiet.console.quiet = True
    objective = TrialRuns(trainer, tracker, quiet, None)
    trial = optuna.create_study().ask()
    with pytest.raises(TrialPruned):
        objective(_AlwaysPrune(trial, {}))
    run = tracker.client.get_run(trial.user_attrs["mlflow_run_id"])
    assert run.info.status == "KILLED"
    assert run.data.tags["kdsweep.trial_state"] == "PRUNED"
    assert run.data.tags["kdsweep.reason"] == "pruned at epoch 0"


FAILING_LOSSES = """
import torch
from kdsweep.plugin import hookimpl

def nan_loss(batch):
    return batch.student_logits.sum() * float("nan")

def oom_loss(batch, step=0):
    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

@hookimpl
def kdsweep_register_losses(registry):
    registry.add_loss("nan_loss", nan_loss, needs_teacher=False)
    registry.add_loss("oom_loss", oom_loss, needs_teacher=False)
"""


@pytest.mark.parametrize(
    ("loss", "state", "status", "reason", "code"),
    [
        # a loss that is NaN at the first batch is the loss's fault, named with its plugin
        ("nan_loss", "FAIL", "FAILED", "main loss 'nan_loss' (plugin 'failing'", 1),
        ("oom_loss", "FAIL", "FAILED", "CUDA out of memory", 1),  # no trial finished: 1
    ],
)
def test_diverging_and_out_of_memory_trials(
    write_study, tmp_path, loss, state, status, reason, code
):
    (tmp_path / "failing.py").write_text(FAILING_LOSSES)
    path = write_study(
        n_trials=2,
        loss=loss,
        search="",
        study={"plugins": ["failing.py"], "baseline": False, "keep": "all"},
    )
    results = tmp_path / "results"
    assert main(["run", str(path), "--results", str(results)]) == code
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{results / 'optuna.db'}")
    assert [t.state.name for t in study.trials] == [state, state]  # the next trial still ran
    _, runs = _runs_by_role(f"sqlite:///{results / 'mlflow.db'}", "tiny")
    for run in runs["trial"]:
        assert run.info.status == status
        assert reason in run.data.tags["kdsweep.reason"]
        assert "plugin" not in run.data.tags["kdsweep.reason"] or loss == "nan_loss"
    assert weight_files(results) == []  # keep = "all" keeps complete trials only
