"""The students a study keeps: logged models in MLflow, the registered champion, and
``kdsweep export`` / ``kdsweep.load_student`` reproducing each trial's recorded accuracy,
from a fresh process, in every format."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import onnxruntime
import optuna
import pytest
import torch
from kdsweep_builtins.datasets import load_digits
from kdsweep_builtins.models import build_cnn
from mlflow import MlflowClient
from optuna.trial import TrialState
from recorded import student_models, weight_files
from safetensors.torch import load_file
from study_files import write_tiny_study

import kdsweep
from kdsweep.cli import main

NAME = "keep"
CHAMPION = "keep-champion"


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path]:
    """A finished two-objective study (accuracy, size) over widths 2 and 4: its study
    file and results folder."""
    folder = tmp_path_factory.mktemp("keep")
    study = write_tiny_study(
        folder / "keep.toml",
        name=NAME,
        n_trials=6,
        search="""
        temperature = { low = 1.0, high = 8.0, log = true }
        width = { choices = [2, 4] }
        """,
        study_keys=f"""
        objectives = [{{ metric = "val_accuracy" }}, {{ metric = "params" }}]
        register = "{CHAMPION}"
        """,
        train={"epochs": 4},
    )
    results = folder / "results"
    assert main(["run", str(study), "--results", str(results)]) == 0
    return study, results


def _stores(results: Path) -> tuple[optuna.Study, MlflowClient]:
    storage = f"sqlite:///{results / 'optuna.db'}"
    return (
        optuna.load_study(study_name=NAME, storage=storage),
        MlflowClient(f"sqlite:///{results / 'mlflow.db'}"),
    )


def _best_by_accuracy(trials: list) -> dict:
    """The first objective's best complete trial, overall (key None) and per width."""
    best: dict = {}
    for trial in sorted(trials, key=lambda t: (-t.values[0], t.number)):
        best.setdefault(None, trial)
        best.setdefault(trial.params["student.width"], trial)
    return best


def _test_split() -> tuple[torch.Tensor, torch.Tensor]:
    data = load_digits()
    return data.test_x, data.test_y


def _accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    return (logits.argmax(dim=1) == targets).float().mean().item()


def test_the_front_and_the_best_per_width_are_logged_models(finished, monkeypatch) -> None:
    _, results = finished
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{results / 'mlflow.db'}")
    optuna_study, client = _stores(results)
    complete = [t for t in optuna_study.trials if t.state == TrialState.COMPLETE]
    best = _best_by_accuracy(complete)
    expected = {t.number for t in optuna_study.best_trials} | {
        t.number for width, t in best.items() if width is not None
    }
    models = student_models(f"sqlite:///{results / 'mlflow.db'}", NAME)
    by_trial = {int(m.tags["kdsweep.trial_number"]): m for m in models}
    assert set(by_trial) == expected and len(models) == len(expected)
    assert len(models) <= len(optuna_study.best_trials) + 2  # front + widths at most
    trials = {t.number: t for t in complete}
    for number, model in by_trial.items():
        trial = trials[number]
        assert model.source_run_id == trial.user_attrs["mlflow_run_id"]
        assert model.tags["kdsweep.student"] == "cnn"
        assert model.tags["kdsweep.student.plugin"] == "builtin-models"
        assert model.tags["kdsweep.student.version"]
        assert model.params["student.width"] == str(trial.params["student.width"])
        linked = {m.key: m.value for m in model.metrics}
        recorded = trial.user_attrs["metrics"]["test_accuracy"]
        assert linked["test_accuracy"] == round(recorded, 4)  # as the UI shows it
        signature = mlflow.models.get_model_info(f"models:/{model.model_id}").signature
        assert signature.inputs.inputs[0].shape == (-1, 1, 8, 8)
        assert signature.outputs.inputs[0].shape == (-1, 10)
        run = client.get_run(model.source_run_id)
        assert run.data.tags["kdsweep.model_id"] == model.model_id
        assert [o.model_id for o in run.outputs.model_outputs] == [model.model_id]


def test_the_best_student_is_the_registered_champion(finished) -> None:
    _, results = finished
    optuna_study, client = _stores(results)
    complete = [t for t in optuna_study.trials if t.state == TrialState.COMPLETE]
    best = _best_by_accuracy(complete)[None]
    version = client.get_model_version_by_alias(CHAMPION, "champion")
    assert version.source == f"models:/{best.user_attrs['model_id']}"
    assert version.tags["kdsweep.trial_number"] == str(best.number)


def test_export_onnx_and_torchscript_from_a_fresh_process(finished, tmp_path) -> None:
    study, results = finished
    optuna_study, _ = _stores(results)
    best = _best_by_accuracy([t for t in optuna_study.trials if t.state == TrialState.COMPLETE])
    recorded = best[None].user_attrs["metrics"]["test_accuracy"]
    inputs, targets = _test_split()
    printed = {}
    for format in ("onnx", "torchscript"):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "kdsweep",
                "export",
                str(study),
                "--best",
                "--format",
                format,
                "--out",
                str(tmp_path),
                "--results",
                str(results),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert f"trial {best[None].number} " in done.stdout
        printed[format] = done.stdout
    script = torch.jit.load(str(next(tmp_path.glob("*.torchscript.pt"))))
    with torch.no_grad():
        assert _accuracy(script(inputs), targets) == recorded  # exactly
    session = onnxruntime.InferenceSession(str(next(tmp_path.glob("*.onnx"))))
    logits = session.run(None, {"input": inputs.numpy()})[0]
    assert abs(_accuracy(torch.from_numpy(logits), targets) - recorded) <= 0.001
    assert "onnxruntime: test accuracy" in printed["onnx"]
    description = json.loads(next(tmp_path.glob("*.onnx.json")).read_text())
    assert description["trial"] == best[None].number
    assert description["num_classes"] == 10 and description["input_shape"] == [1, 8, 8]
    assert set(description["preprocessing"]) >= {"mean", "std"}
    assert description["components"]["kdsweep.student.plugin"] == "builtin-models"
    assert description["onnx_check"]["agreement"] >= 0.999
    assert description["metrics"]["test_accuracy"] == recorded


def test_state_dict_safetensors_and_load_student_reproduce_each_width(finished, tmp_path) -> None:
    study, results = finished
    optuna_study, _ = _stores(results)
    best = _best_by_accuracy([t for t in optuna_study.trials if t.state == TrialState.COMPLETE])
    inputs, targets = _test_split()
    for width in (2, 4):
        trial = best[width]
        recorded = trial.user_attrs["metrics"]["test_accuracy"]
        for format, load in (
            ("state_dict", lambda p: torch.load(p, weights_only=True)),
            ("safetensors", load_file),
        ):
            out = tmp_path / format
            argv = ["export", str(study), "--best", "--width", str(width), "--format", format]
            assert main([*argv, "--out", str(out), "--results", str(results)]) == 0
            (file,) = [p for p in out.glob(f"*trial{trial.number}*") if p.suffix != ".json"]
            model = build_cnn(width, 10, (1, 8, 8))
            model.load_state_dict(load(file))
            with torch.no_grad():
                assert _accuracy(model.eval()(inputs), targets) == recorded
        student = kdsweep.load_student(study, width=width, results=results)
        with torch.no_grad():
            assert _accuracy(student(inputs), targets) == recorded


def test_retrain_trains_on_train_and_validation_and_says_both(finished, tmp_path, capsys) -> None:
    study, results = finished
    optuna_study, _ = _stores(results)
    trial = next(t for t in optuna_study.trials if t.state == TrialState.COMPLETE)
    argv = ["export", str(study), "--trial", str(trial.number), "--retrain"]
    assert main([*argv, "--out", str(tmp_path), "--results", str(results)]) == 0
    shown = capsys.readouterr().out
    assert "retrained on train + validation" in shown and "the trial recorded" in shown
    description = json.loads(next(tmp_path.glob("*-retrained.pt.json")).read_text())
    assert description["retrained_on"] == "train+validation"
    model = build_cnn(trial.params["student.width"], 10, (1, 8, 8))
    model.load_state_dict(torch.load(next(tmp_path.glob("*-retrained.pt")), weights_only=True))
    inputs, targets = _test_split()
    with torch.no_grad():
        assert _accuracy(model.eval()(inputs), targets) == description["exported_test_accuracy"]


def test_export_names_what_is_wrong(finished, tmp_path, capsys) -> None:
    study, results = finished
    optuna_study, _ = _stores(results)
    kept = {t.number for t in optuna_study.trials if "model_id" in t.user_attrs}
    base = ["export", str(study), "--out", str(tmp_path), "--results", str(results)]
    assert main([*base, "--trial", "99"]) == 2
    assert "--trial 99: study 'keep' has no such trial" in capsys.readouterr().err
    complete = {t.number for t in optuna_study.trials if t.state == TrialState.COMPLETE}
    dropped = sorted(
        complete
        - {
            int(m.tags["kdsweep.trial_number"])
            for m in student_models(f"sqlite:///{results / 'mlflow.db'}", NAME)
        }
    )
    if dropped:  # a trial whose student the study did not keep (or dropped at the end)
        assert main([*base, "--trial", str(dropped[0])]) == 2
        assert "kept no student" in capsys.readouterr().err
    assert kept
    assert main([*base, "--trial", "0", "--width", "2"]) == 2
    assert "--width W goes with --best" in capsys.readouterr().err
    assert main([*base, "--best", "--width", "16"]) == 2
    assert "no complete trial at that width (widths: 2, 4)" in capsys.readouterr().err
    without_onnx = (
        "import sys; sys.modules['onnxruntime'] = None; from kdsweep.cli import main; "
        f"sys.exit(main({[*base, '--best', '--format', 'onnx']!r}))"
    )
    done = subprocess.run([sys.executable, "-c", without_onnx], capture_output=True, text=True)
    assert done.returncode == 2 and 'pip install "kdsweep[onnx]"' in done.stderr
    assert not list(tmp_path.glob("*.onnx"))


def test_registering_again_moves_the_alias_without_new_versions(finished) -> None:
    from kdsweep.run.locations import RunOptions
    from kdsweep.run.stored import stored_tracker
    from kdsweep.track.models import register_champion, student_models

    study, results = finished
    tracker = stored_tracker(kdsweep.load_study(study), RunOptions(results=str(results)))
    first, second = student_models(tracker)[:2]

    def aliased() -> str:
        return tracker.client.get_model_version_by_alias("moving", "champion").version

    one = register_champion(tracker, "moving", first)
    assert aliased() == one
    two = register_champion(tracker, "moving", second)
    assert two != one and aliased() == two
    assert register_champion(tracker, "moving", first) == one  # its version, moved back
    assert aliased() == one
    assert len(tracker.client.search_model_versions("name = 'moving'")) == 2


def test_keep_none_stores_no_weights(write_study, tmp_path) -> None:
    study = write_study(n_trials=2, study_keys='keep = "none"')
    assert main(["run", str(study), "--results", str(tmp_path / "r")]) == 0
    assert student_models(f"sqlite:///{tmp_path / 'r' / 'mlflow.db'}", "tiny") == []
    assert weight_files(tmp_path / "r") == []


def test_students_trained_in_trainer_processes_export_the_same(write_study, tmp_path) -> None:
    study = write_study(n_trials=4, study_keys='keep = "all"\njobs = 2', train={"epochs": 3})
    results = tmp_path / "r"
    assert main(["run", str(study), "--results", str(results)]) == 0
    optuna_study = optuna.load_study(
        study_name="tiny", storage=f"sqlite:///{results / 'optuna.db'}"
    )
    complete = [t for t in optuna_study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 4
    assert len(student_models(f"sqlite:///{results / 'mlflow.db'}", "tiny")) == 4
    inputs, targets = _test_split()
    for trial in complete:
        student = kdsweep.load_student(study, trial.number, results=results)
        with torch.no_grad():
            accuracy = _accuracy(student(inputs), targets)
        assert accuracy == trial.user_attrs["metrics"]["test_accuracy"], trial.number


def test_the_stores_name_objectives_curves_and_runs(finished) -> None:
    """What optuna-dashboard and the MLflow UI read: objective names, the per-epoch values
    (a multi-objective study keeps them out of Optuna's intermediate values: TPE fails on
    them), run names, the runs view, the summary."""
    study, results = finished
    optuna_study, client = _stores(results)
    assert optuna_study.metric_names == ["val_accuracy", "params"]
    complete = [t for t in optuna_study.trials if t.state == TrialState.COMPLETE]
    for trial in complete:
        assert trial.intermediate_values == {}
        assert sorted(trial.user_attrs["epoch_val_accuracy"]) == ["0", "1", "2", "3"]
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        width, temperature = trial.params["student.width"], trial.params["loss.temperature"]
        assert run.info.run_name == f"t{trial.number} w{width} T={temperature:.2g}"
        assert run.data.metrics["val_accuracy"] == round(trial.values[0], 4)
    experiment = client.get_experiment_by_name(NAME)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    view = json.loads(experiment.tags["mlflow.sharedViewState.kdsweep"])
    assert view["searchFilter"] == "tags.`kdsweep.role` = 'trial'"
    assert view["selectedColumns"][:2] == ["params.`loss.temperature`", "params.`student.width`"]
    assert {"metrics.`val_accuracy`", "metrics.`params`", "metrics.`kd_gain`"} <= set(
        view["selectedColumns"]
    )
    description = experiment.tags["mlflow.note.content"]
    assert f"**kdsweep study `{NAME}`**" in description and "Pareto front: trials" in description
    curves = kdsweep.load_curves(study, results)
    assert len(curves) == 4 * len(optuna_study.trials)
    first = curves[curves.trial == complete[0].number].set_index("epoch").val_accuracy
    assert first.to_dict() == {
        int(k): v for k, v in complete[0].user_attrs["epoch_val_accuracy"].items()
    }
    frame = kdsweep.load_results(study, results)
    assert (frame["component.student.plugin"] == "builtin-models").all()
