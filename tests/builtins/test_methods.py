"""Every registered loss and schedule runs a real 2-trial study on digits."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from recorded import trial_runs

from kdsweep.cli.main import main
from kdsweep.plugin.manager import load_registry

REGISTRY = load_registry()
LAYER_SETTINGS = {"at": 'student_layer = "block2, block3"\nteacher_layer = "block2, block3"\n'}

STUDY = """
[study]
name = "{name}"
n_trials = 2
pruner = "none"
baseline = false

[teacher]
model = "cnn"
width = 8
epochs = 2
extra = [{{ model = "mlp", width = 16 }}]

[student]
model = "cnn"
width = 2

[train]
epochs = 2
batch_size = 256

[loss]
name = "{loss}"
{loss_settings}
{extra}
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("results")


def _run(results: Path, name: str, loss: str, extra: str = "", loss_settings: str = "") -> None:
    path = results / f"{name}.toml"
    path.write_text(STUDY.format(name=name, loss=loss, extra=extra, loss_settings=loss_settings))
    assert main(["run", str(path), "--results", str(results)]) == 0
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{results / 'optuna.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert all(0.0 <= t.value <= 1.0 for t in study.trials)


@pytest.mark.parametrize("loss", REGISTRY.names("loss"))
def test_every_loss_runs_a_study(results, loss: str) -> None:
    searched = [p for p in ("temperature", "alpha") if p in REGISTRY.get("loss", loss).params]
    search = "\n".join(f"{p} = {{ low = 0.5, high = 0.9 }}" for p in searched)
    _run(results, f"loss-{loss}", loss, f"[search]\n{search}", LAYER_SETTINGS.get(loss, ""))


@pytest.mark.parametrize("schedule", REGISTRY.names("schedule"))
def test_every_schedule_runs_a_study(results, schedule: str) -> None:
    floor = "floor = 1.0, " if "floor" in REGISTRY.get("schedule", schedule).params else ""
    extra = (
        f'[schedule]\ntemperature = {{ {floor}name = "{schedule}" }}\n'
        f'lr = "{schedule}"\nalpha = "{schedule}"\n'
    )
    _run(results, f"schedule-{schedule}", "kd", extra)


def test_losses_combine_with_weighted_terms(results) -> None:
    extra = """
[loss.add.fitnet]
weight = 10.0
student_layer = "block3"
teacher_layer = "block3"

[loss.add.rkd]
weight = 0.5

[search]
"loss.add.fitnet.weight" = { low = 1.0, high = 100.0, log = true }
"""
    _run(results, "combined", "kd", extra)
    for run in trial_runs(f"sqlite:///{results / 'mlflow.db'}", "combined"):
        assert run.data.tags["kdsweep.loss.add.fitnet.plugin"] == "builtin-feature"
        assert run.data.tags["kdsweep.loss.add.rkd"] == "rkd"
        assert float(run.data.params["loss.add.rkd.weight"]) == 0.5
        assert run.data.params["loss.add.fitnet.student_layer"] == "block3"
