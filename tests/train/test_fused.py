"""Fused trials: k students trained as one batched model give the metrics of k separate
trainings with the same seeds, and each trial is still told, logged and pruned alone."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import optuna
import pytest
import torch
from kdsweep_builtins.datasets import load_digits
from kdsweep_builtins.losses import kd_loss, kd_loss_batched
from kdsweep_builtins.models import build_cnn
from mlflow import MlflowClient
from recorded import trial_runs

from kdsweep.cli import main
from kdsweep.errors import ConfigError, PluginError
from kdsweep.run.locations import RunOptions
from kdsweep.run.study_run import run_study
from kdsweep.study.load import load_study
from kdsweep.study.settings import TrainSettings
from kdsweep.train import fit, fused
from kdsweep.train.grouped import GroupedModels

DATA = load_digits()
CPU = torch.device("cpu")
# Each member: its own temperature, alpha, learning rate and (in the second group) seed.
MEMBERS = [
    {"temperature": 4.0, "alpha": 0.9, "lr": 0.05},
    {"temperature": 1.5, "alpha": 0.3, "lr": 0.1},
    {"temperature": 8.0, "alpha": 0.6, "lr": 0.02},
]


def _teacher_logits() -> torch.Tensor:
    teacher = fit.build_seeded(lambda: build_cnn(8, 10, DATA.input_shape), 0, CPU)
    fit.fit(teacher, DATA, fit.Recipe(TrainSettings(epochs=2), fit.TrainingLoss.of(_ce)))
    return fit.predict_logits(teacher, DATA.train_x)


def _ce(batch, **_):
    return torch.nn.functional.cross_entropy(batch.student_logits, batch.targets)


TEACHER = fit.Teachers(logits=(_teacher_logits(),))


def _setup(member: dict, seed: int, batched: bool = False) -> tuple[torch.nn.Module, fit.Recipe]:
    model = fit.build_seeded(lambda: build_cnn(4, 10, DATA.input_shape), seed, CPU)
    settings = TrainSettings(epochs=3, batch_size=128, lr=member["lr"], seed=seed)
    loss = fit.TrainingLoss.of(
        kd_loss,
        kd_loss_batched if batched else None,
        temperature=member["temperature"],
        alpha=member["alpha"],
    )
    return model, fit.Recipe(settings, loss)


def _alone(member: dict, seed: int, on_epoch=None) -> fit.FitResult:
    model, recipe = _setup(member, seed)
    return fit.fit(model, DATA, recipe, teachers=TEACHER, on_epoch=on_epoch)


def _together(seeds: list[int], on_epochs=None, grouped: bool = True, batched=False) -> list:
    pairs = zip(MEMBERS, seeds, strict=True)
    setups = [_setup(member, seed, batched) for member, seed in pairs]
    models, recipes = (list(column) for column in zip(*setups, strict=True))
    return fused.fit_group(
        models, DATA, recipes, teachers=TEACHER, on_epochs=on_epochs, grouped=grouped
    )


def _recorder(reports: list):
    return lambda report: reports.append(report)


@pytest.mark.parametrize(
    ("grouped", "batched"),
    [(True, False), (False, False), (True, True)],
    ids=["grouped-layers", "vmap", "grouped-batched-loss"],
)
@pytest.mark.parametrize("seeds", [[0, 0, 0], [0, 1, 2]], ids=["one-stream", "own-streams"])
def test_a_fused_group_matches_its_trials_run_one_by_one(
    seeds: list[int], grouped: bool, batched: bool
) -> None:
    fused_reports: list[list] = [[] for _ in MEMBERS]
    together = _together(seeds, [_recorder(r) for r in fused_reports], grouped, batched)
    for k, (member, seed) in enumerate(zip(MEMBERS, seeds, strict=True)):
        reports: list = []
        alone = _alone(member, seed, _recorder(reports))
        assert len(reports) == len(fused_reports[k]) == 3
        for one, batched in zip(reports, fused_reports[k], strict=True):
            assert batched.train_loss == pytest.approx(one.train_loss, rel=1e-4)
            assert batched.val_accuracy == pytest.approx(one.val_accuracy, abs=1.5 / 360)
        assert together[k].test_accuracy == pytest.approx(alone.test_accuracy, abs=1.5 / 360)
        assert together[k].params == alone.params
    # The members really differ: the group did not train one model three times.
    assert len({round(r[-1].train_loss, 6) for r in fused_reports}) == 3


def test_a_batched_loss_must_give_one_loss_per_student() -> None:
    setups = [_setup(member, 0) for member in MEMBERS]
    models, recipes = (list(column) for column in zip(*setups, strict=True))
    scalar = fit.TrainingLoss.of(kd_loss, lambda batch, **params: batch.student_logits.sum())
    recipes = [replace(recipe, loss=scalar) for recipe in recipes]
    with pytest.raises(PluginError, match=r"returned shape \(\) for 3 students"):
        fused.fit_group(models, DATA, recipes, teachers=TEACHER)


@pytest.mark.parametrize("batched", [False, True], ids=["per-member-loss", "batched-loss"])
def test_a_pruned_or_diverging_member_leaves_the_group_alone(batched: bool) -> None:
    class Stop(Exception):
        pass

    def prune_at_first_epoch(report) -> None:
        raise Stop(f"pruned at epoch {report.epoch}")

    diverging = dict(MEMBERS[2], lr=1e12)
    members = [MEMBERS[0], MEMBERS[1], diverging]
    setups = [_setup(member, 0, batched) for member in members]
    models, recipes = (list(column) for column in zip(*setups, strict=True))
    reports: list = []
    results = fused.fit_group(
        models,
        DATA,
        recipes,
        teachers=TEACHER,
        on_epochs=[_recorder(reports), prune_at_first_epoch, None],
    )
    assert isinstance(results[1], Stop)
    assert isinstance(results[2], fit.DivergedError)
    assert len(reports) == 3
    alone = _alone(MEMBERS[0], 0)
    assert results[0].test_accuracy == pytest.approx(alone.test_accuracy, abs=1.5 / 360)


def test_members_must_share_the_batches_and_the_optimizer() -> None:
    model, recipe = _setup(MEMBERS[0], 0)
    other, _ = _setup(MEMBERS[1], 0)
    smaller = replace(recipe, settings=replace(recipe.settings, batch_size=32))
    with pytest.raises(ValueError, match=r"train\.batch_size"):
        fused.fit_group([model, other], DATA, [recipe, smaller], teachers=TEACHER)


SEARCH = """
temperature = { low = 1.0, high = 8.0, log = true }
lr = { low = 0.01, high = 0.2, log = true }
width = { choices = [2, 4] }
"""


@pytest.mark.parametrize("jobs", [1, 2], ids=["here", "two-trainers"])
def test_a_fused_study_tells_and_logs_every_trial_alone(
    write_study, tmp_path: Path, jobs: int
) -> None:
    path = write_study(
        name="fused", n_trials=6, search=SEARCH, study_keys=f"fuse = 3\njobs = {jobs}"
    )
    results = tmp_path / "results"
    assert main(["run", str(path), "--results", str(results)]) == 0
    study = optuna.load_study(study_name="fused", storage=f"sqlite:///{results / 'optuna.db'}")
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 6
    tracking = f"sqlite:///{results / 'mlflow.db'}"
    runs = trial_runs(tracking, "fused")
    client = MlflowClient(tracking_uri=tracking)
    assert len(runs) == 6
    by_number = {t.number: t for t in trials}
    for run in runs:
        number = int(run.data.tags["kdsweep.trial_number"])
        together = run.data.tags.get("kdsweep.fused_with")  # none: it trained alone
        members = [by_number[int(n)] for n in together.split(",")] if together else []
        members = members or [by_number[number]]
        assert number in {t.number for t in members}
        assert {t.number // 3 for t in members} == {number // 3}  # of the group asked
        # One width trains together (on the CPU a group asked may mix widths); the sampler
        # chose each member's own temperature and lr.
        assert len({t.params["student.width"] for t in members}) == 1
        assert len({t.params["loss.temperature"] for t in members}) == len(members)
        assert len({t.params["train.lr"] for t in members}) == len(members)
    for run in runs:
        trial = by_number[int(run.data.tags["kdsweep.trial_number"])]
        assert run.info.status == "FINISHED"
        assert run.data.metrics["val_accuracy"] == round(trial.values[0], 4)  # as shown
        assert float(run.data.params["loss.temperature"]) == pytest.approx(
            trial.params["loss.temperature"]
        )
        history = client.get_metric_history(run.info.run_id, "epoch/val_accuracy")
        assert [m.step for m in history] == [0, 1]
        assert run.data.metrics["train_time_s"] > 0
    # A part's students are weighed together on closing: with one objective only its best
    # can be kept (the best of its width), so at most one of each part was ever logged.
    parts = {
        run.data.tags.get("kdsweep.fused_with", run.data.tags["kdsweep.trial_number"])
        for run in runs
    }
    for part in parts:
        logged = [n for n in part.split(",") if "model_id" in by_number[int(n)].user_attrs]
        assert len(logged) <= 1, part


def test_fuse_refuses_losses_that_cannot_fuse_and_auto_falls_back(
    write_study, tmp_path: Path
) -> None:
    path = write_study(loss="dml", search=SEARCH, study_keys="fuse = 3")
    with pytest.raises(ConfigError, match=r"\[study\] fuse = 3: fused trials need"):
        run_study(load_study(path), RunOptions(results=str(tmp_path / "r"), n_trials=0))
    path = write_study(loss="dml", n_trials=2, search=SEARCH, study_keys='fuse = "auto"')
    summary = run_study(load_study(path), RunOptions(results=str(tmp_path / "r2")))
    assert summary.states == {"COMPLETE": 2}
    path = write_study(loss="dml", search=SEARCH, study_keys="fuse = 0")
    with pytest.raises(ConfigError, match=r"\[study\] fuse = 0: must be"):
        load_study(path)


def test_grouped_members_keep_their_own_trained_state() -> None:
    setups = [_setup(member, 0) for member in MEMBERS]
    models, recipes = (list(column) for column in zip(*setups, strict=True))
    results = fused.fit_group(models, DATA, recipes, teachers=TEACHER)
    steps = 3 * fit.even_batches(len(DATA.train_y), 128)
    for model, result in zip(models, results, strict=True):
        # BatchNorm statistics written back: each model alone scores what the group said
        assert fit.accuracy(model, DATA.test_x, DATA.test_y) == result.test_accuracy
        norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        assert norms and all(int(m.num_batches_tracked) == steps for m in norms)


def test_a_grouped_network_runs_in_channels_last_whatever_its_members_layout() -> None:
    """Grouped kernels are fast in channels_last only, and a one-channel input batch does
    not say its layout (its strides fit both): the members' weights must say it."""
    models = [build_cnn(4, 10, DATA.input_shape) for _ in range(3)]  # contiguous, as built
    alone = torch.stack([model.eval()(DATA.val_x) for model in models])
    grouped = GroupedModels(models)
    convs = [m for model in models for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    grouped.train(False)
    torch.testing.assert_close(grouped(DATA.val_x, shared=True), alone, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("student", "pruner", "fuse"),
    [("cnn", "none", 8), ("mlp", "none", 8), ("resnet8", "none", 1), ("cnn", "median", 1)],
)
def test_fuse_auto_groups_plain_stacks_without_a_pruner_on_the_cpu(
    write_study, tmp_path: Path, student: str, pruner: str, fuse: int
) -> None:
    from kdsweep.run.plan import prepare

    path = write_study(
        search=SEARCH, pruner=pruner, study_keys='fuse = "auto"', student={"model": student}
    )
    plan = prepare(load_study(path), RunOptions(results=str(tmp_path / "r"), device="cpu"))
    assert plan.fuse == fuse
