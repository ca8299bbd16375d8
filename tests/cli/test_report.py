"""A multi-objective study with repeats, then `kdsweep report` and `load_results`."""

from __future__ import annotations

import pandas as pd
import pytest
from mlflow import MlflowClient
from PIL import Image
from study_files import write_tiny_study

import kdsweep
from kdsweep.cli import main

OBJECTIVES = [
    {"metric": "val_accuracy", "direction": "maximize"},
    {"metric": "params", "direction": "minimize"},
]
SEARCH = """
temperature = { low = 1.0, high = 8.0 }
alpha = { low = 0.1, high = 0.9 }
width = { choices = [2, 4, 8] }
"""


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    path = write_tiny_study(
        folder / "study.toml",
        name="report",
        n_trials=6,
        search=SEARCH,
        study={"seed": None, "repeats": 2, "objectives": OBJECTIVES},
        student={"width": None},
        train={"epochs": 3, "lr": None},
        schedule=None,
    )
    assert main(["run", str(path), "--results", str(folder / "results")]) == 0
    assert main(["report", str(path), "--results", str(folder / "results")]) == 0
    return path, folder / "results", folder / "results" / "reports" / "report"


def _dominated(row: pd.Series, frame: pd.DataFrame) -> bool:
    return bool(
        (
            (frame.val_accuracy >= row.val_accuracy)
            & (frame.params <= row.params)
            & ((frame.val_accuracy > row.val_accuracy) | (frame.params < row.params))
        ).any()
    )


def test_results_frame_has_every_trial_and_its_metrics(reported) -> None:
    path, results, _ = reported
    frame = kdsweep.load_results(path, results=str(results))
    assert len(frame) == 6 and set(frame.state) == {"COMPLETE"}
    for column in (
        "loss.temperature",
        "student.width",
        "val_accuracy",
        "test_accuracy",
        "kd_gain",
        "params",
        "flops",
        "latency_ms",
        "size_bytes",
        "compression",
        "train_time_s",
        "worker",
        "pareto",
    ):
        assert column in frame, column
    assert frame.kd_gain.notna().all()
    assert (frame.flops > 0).all() and (frame.size_bytes > 0).all()
    # the Pareto flags are exactly the non-dominated trials
    expected = [not _dominated(row, frame) for _, row in frame.iterrows()]
    assert frame.pareto.tolist() == expected and sum(expected) >= 1


def test_report_files(reported) -> None:
    _, _, out = reported
    csv = pd.read_csv(out / "trials.csv")
    assert len(csv) == 6
    summary = (out / "summary.md").read_text()
    for section in (
        "## Teacher",
        "## No-distillation baselines",
        "## Best trial per width",
        "## Pareto front",
        "## Repeats over seeds",
        "## Plots",
    ):
        assert section in summary
    for name in ("accuracy_vs_params", "accuracy_vs_train_time", "accuracy_vs_temperature_alpha"):
        with Image.open(out / f"{name}.png") as image:
            image.verify()
            assert image.size[0] > 300
        assert f"]({name}.png)" in summary


def test_repeats_compare_with_the_baseline_over_seeds(reported) -> None:
    _, results, out = reported
    client = MlflowClient(tracking_uri=f"sqlite:///{results / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("report")
    runs = client.search_runs([experiment.experiment_id])
    roles = [r.data.tags["kdsweep.role"] for r in runs]
    widths_with_trials = 3  # every width's best trial is repeated over 2 seeds
    assert roles.count("repeat") <= widths_with_trials * 2 and roles.count("repeat") >= 2
    seeds = {
        int(r.data.params["train.seed"]) for r in runs if r.data.tags["kdsweep.role"] == "repeat"
    }
    assert seeds == {1, 2}
    baseline_seeds = {
        int(r.data.params["train.seed"]) for r in runs if r.data.tags["kdsweep.role"] == "baseline"
    }
    assert baseline_seeds == {0, 1, 2}
    summary = (out / "summary.md").read_text()
    repeats = summary.split("## Repeats over seeds")[1]
    header = next(line for line in repeats.splitlines() if line.startswith("| trial"))
    assert header == (
        "| trial | width | seeds | kd_mean | kd_std | baseline_mean | baseline_std | gain | t | p |"
    )


def test_report_is_logged_to_the_study_run(reported) -> None:
    _, results, _ = reported
    client = MlflowClient(tracking_uri=f"sqlite:///{results / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("report")
    (parent,) = client.search_runs([experiment.experiment_id], "tags.`kdsweep.role` = 'study'")
    names = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert {"report/summary.md", "report/trials.csv", "report/accuracy_vs_params.png"} <= names
    assert parent.info.status == "FINISHED"  # reading the study for the report left it so


def test_report_before_any_run_is_a_clear_error(tmp_path, capsys) -> None:
    path = write_tiny_study(tmp_path / "study.toml", '[study]\nname = "never-run"\n')
    assert main(["report", str(path), "--results", str(tmp_path)]) == 2
    assert "has no results" in capsys.readouterr().err
