"""Trials in trainer processes (jobs > 1): the parent decides after each epoch, the child
trains; what the parent's callback raises ends the child's trial, and a dead child is a
failed trial, not a hung study."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import optuna
import pytest
import torch
from mlflow import MlflowClient
from recorded import trial_runs

from kdsweep.cli import main
from kdsweep.run.processes import TrainerDied, TrainerPool, TrainerProcess, TrainerSpec
from kdsweep.run.signals import terminate_as_interrupt
from kdsweep.search.trial import TrialPruned
from kdsweep.study.load import load_study
from kdsweep.train.cache import ModelCache
from kdsweep.train.fit import FitResult
from kdsweep.train.trainer import StudyTrainer

CE_SEARCH = "lr = { low = 0.01, high = 0.2, log = true }\nwidth = { choices = [2, 4] }"


@pytest.fixture
def prepared(write_study, tmp_path: Path):
    path = write_study(loss="ce", search=CE_SEARCH)
    study = load_study(path)
    experiment = StudyTrainer(study, torch.device("cpu"), ModelCache(tmp_path / "cache"))
    spec = TrainerSpec(str(path), (), "cpu", str(tmp_path / "cache"), threads=1)
    return study, experiment, spec


def _trained(trainer: TrainerProcess, settings, on_epoch) -> FitResult:
    """One trial through the trainer's queue; raises the exception that ended it."""
    (outcome,) = trainer.wait(trainer.submit([settings], [on_epoch]))
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


@pytest.mark.parametrize("forked", [True, False], ids=["forked", "spawned"])
def test_a_trainer_trains_like_this_process_and_obeys_the_verdicts(prepared, forked) -> None:
    study, experiment, spec = prepared
    settings = study.resolve({"student.width": 2, "train.lr": 0.1})
    local = experiment.run_trial(settings)
    trainer = TrainerProcess(spec, experiment if forked else None)
    try:
        epochs: list[int] = []
        remote = _trained(trainer, settings, lambda report: epochs.append(report.epoch))
        assert epochs == [0, 1]
        assert remote.val_accuracy == pytest.approx(local.val_accuracy)
        assert remote.test_accuracy == pytest.approx(local.test_accuracy)

        def prune(report) -> None:
            raise TrialPruned(f"pruned at epoch {report.epoch}")

        with pytest.raises(TrialPruned, match="pruned at epoch 0"):
            _trained(trainer, settings, prune)

        def interrupt(report) -> None:
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            _trained(trainer, settings, interrupt)
        again = _trained(trainer, settings, None)  # the same child goes on
        assert again.val_accuracy == pytest.approx(local.val_accuracy)
    finally:
        trainer.close()
    assert not trainer.process.is_alive()


def test_work_sent_ahead_trains_next_and_each_verdict_reaches_its_own_trial(prepared) -> None:
    study, experiment, spec = prepared
    settings = study.resolve({"student.width": 2, "train.lr": 0.1})
    trainer = TrainerProcess(spec, experiment)
    try:
        first_epochs: list[int] = []

        def prune(report) -> None:
            raise TrialPruned(f"pruned at epoch {report.epoch}")

        first = trainer.submit([settings], [lambda report: first_epochs.append(report.epoch)])
        second = trainer.submit([settings], [prune])  # queued while the first trains
        (done,) = trainer.wait(first)
        assert first_epochs == [0, 1] and isinstance(done, FitResult)
        (pruned,) = trainer.wait(second)
        assert isinstance(pruned, TrialPruned) and str(pruned) == "pruned at epoch 0"
    finally:
        trainer.close()


def test_a_killed_trainer_fails_its_trial_and_is_replaced(prepared) -> None:
    study, experiment, spec = prepared
    settings = study.resolve({"student.width": 2})
    pool = TrainerPool(spec, 1, experiment)
    try:
        first = pool.current()

        def kill_child(report) -> None:
            os.kill(first.process.pid, signal.SIGKILL)

        with pytest.raises(TrainerDied, match="ended while training"):
            _trained(pool.current(), settings, kill_child)
        (late,) = first.wait(first.submit([settings], [None]))  # work sent to the dead one
        assert isinstance(late, TrainerDied)
        result = _trained(pool.current(), settings, None)  # a new, spawned trainer
        assert pool.current() is not first
        assert result.val_accuracy > 0.1
    finally:
        pool.close()


def test_a_forked_trainer_ends_on_sigterm_though_its_parent_turns_it_into_an_interrupt(
    prepared,
) -> None:
    study, experiment, spec = prepared
    with terminate_as_interrupt():  # the parent's SIGTERM handler, inherited by the fork
        trainer = TrainerProcess(spec, experiment)
        try:
            _trained(trainer, study.resolve({"student.width": 2}), None)  # it is up
            os.kill(trainer.process.pid, signal.SIGTERM)
            trainer.process.join(timeout=10)
            assert trainer.process.exitcode == -signal.SIGTERM
        finally:
            trainer.close(now=True)


def test_a_study_with_jobs_records_every_trial(write_study, tmp_path: Path) -> None:
    path = write_study(n_trials=4, search=CE_SEARCH, loss="ce", study_keys="jobs = 2")
    results = tmp_path / "results"
    assert main(["run", str(path), "--results", str(results)]) == 0
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{results / 'optuna.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4
    tracking = f"sqlite:///{results / 'mlflow.db'}"
    runs = trial_runs(tracking, "tiny")
    assert len(runs) == 4
    client = MlflowClient(tracking_uri=tracking)
    for run in runs:
        assert run.info.status == "FINISHED"
        history = client.get_metric_history(run.info.run_id, "epoch/val_accuracy")
        assert [m.step for m in history] == [0, 1]  # batched, but every epoch arrives
    for trial in study.trials:
        assert set(trial.user_attrs["epoch_val_accuracy"]) == {"0", "1"}


@pytest.mark.parametrize(
    ("study_keys", "flags", "culprit"),
    [("jobs = 0", [], "[study] jobs = 0"), ("", ["--jobs", "two"], "--jobs two")],
)
def test_a_bad_job_count_fails_before_training(
    write_study, tmp_path: Path, capsys, study_keys, flags, culprit
) -> None:
    path = write_study(study_keys=study_keys)
    assert main(["run", str(path), "--results", str(tmp_path / "r"), *flags]) == 2
    error = capsys.readouterr().err
    assert culprit in error and 'must be "auto" or a whole number >= 1' in error
    assert not (tmp_path / "r" / "cache").exists()  # no model was trained
