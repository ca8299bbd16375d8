"""Every sampler and pruner choice on a tiny real study, and clear errors for misfits."""

from __future__ import annotations

import optuna
import pytest
from study_files import write_tiny_study

from kdsweep.cli import main
from kdsweep.search.pruners import PRUNER_CLASSES
from kdsweep.search.samplers import SAMPLER_CLASSES, make_sampler
from kdsweep.study.load import load_study

SEARCH = """
temperature = { low = 1.0, high = 8.0, step = 1.0 }
width = { choices = [2, 4] }
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return tmp_path_factory.mktemp("samplers")


def _run(results, name: str, sampler: str = '"tpe"', pruner: str = '"median"', extra: str = ""):
    path = write_tiny_study(
        results / f"{name}.toml",
        name=name,
        search=SEARCH,
        study_keys=f"sampler = {sampler}\npruner = {pruner}\n{extra}",  # TOML as given
        study={"pruner": None, "seed": None, "baseline": False},
        teacher={"epochs": 2},
        train={"batch_size": 256, "lr": None},
        schedule=None,
    )
    code = main(["run", str(path), "--results", str(results)])
    if code != 0:
        return code, None
    return code, optuna.load_study(study_name=name, storage=f"sqlite:///{results / 'optuna.db'}")


@pytest.mark.parametrize("sampler", sorted(SAMPLER_CLASSES))
def test_every_sampler_runs(results, sampler: str) -> None:
    two_goals = 'objectives = [{ metric = "val_accuracy" }, { metric = "params" }]'
    extra = two_goals if sampler in ("nsga2", "nsga3") else ""
    code, study = _run(results, f"sampler-{sampler}", f'"{sampler}"', extra=extra)
    assert code == 0
    assert len(study.trials) == 3
    settings = load_study(results / f"sampler-{sampler}.toml")
    used = make_sampler(settings.settings, settings.search, settings.path)
    assert type(used) is SAMPLER_CLASSES[sampler]


@pytest.mark.parametrize("pruner", sorted(PRUNER_CLASSES))
def test_every_pruner_runs(results, pruner: str) -> None:
    code, study = _run(results, f"pruner-{pruner}", pruner=f'"{pruner}"')
    assert code == 0 and len(study.trials) == 3


def test_sampler_options_are_passed(results) -> None:
    code, _ = _run(
        results,
        "options",
        '{ name = "random" }',
        '{ name = "percentile", percentile = 40.0, n_startup_trials = 1 }',
    )
    assert code == 0


@pytest.mark.parametrize(
    ("sampler", "pruner", "extra", "message"),
    [
        (
            '{ name = "nsga2", populaton_size = 4 }',
            '"median"',
            "",
            "unknown option 'populaton_size'",
        ),
        (
            '"cmaes"',
            '"median"',
            'objectives = [{ metric = "val_accuracy" }, { metric = "params" }]',
            "CMA-ES optimises a single objective",
        ),
        ('"random"', '"median"', 'constraints = ["params <= 1000"]', "it ignores constraints"),
        ('"tpe"', '{ name = "median", warmup = 3 }', "", "unknown option 'warmup'"),
        (
            '"tpe"',
            '"median"',
            'objectives = [{ metric = "test_accuracy" }]',
            "test_accuracy cannot be an objective",
        ),
        ('"tpe"', '"median"', 'constraints = ["params < 10"]', "expected 'metric <= number'"),
        ('"tpe"', '"median"', 'objectives = [{ metric = "kd_gain" }]', "needs baseline = true"),
    ],
)
def test_misfits_fail_before_training(results, capsys, sampler, pruner, extra, message) -> None:
    code, _ = _run(results, "misfit", sampler, pruner, extra)
    assert code == 2
    error = capsys.readouterr().err
    assert message in error and "[study]" in error


def test_cmaes_refuses_a_choices_only_space(tmp_path, capsys) -> None:
    path = write_tiny_study(
        tmp_path / "cmaes.toml",
        '[study]\nname = "c"\nsampler = "cmaes"\n[search]\nwidth = { choices = [2, 4] }\n',
    )
    assert main(["run", str(path), "--results", str(tmp_path)]) == 2
    assert "numeric range" in capsys.readouterr().err


def test_grid_needs_a_finite_space(tmp_path, capsys) -> None:
    path = write_tiny_study(
        tmp_path / "grid.toml",
        '[study]\nname = "g"\nsampler = "grid"\n[search]\nalpha = { low = 0.1, high = 0.9 }\n',
    )
    assert main(["run", str(path), "--results", str(tmp_path)]) == 2
    assert "give 'loss.alpha' a step or choices" in capsys.readouterr().err
