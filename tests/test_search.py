from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from kdsweep import search
from kdsweep.config import StudySettings
from kdsweep.space import Dimension

SPACE = (
    Dimension("loss.temperature", "float", 1.0, 10.0, log=True),
    Dimension("student.width", "categorical", choices=(2, 4)),
    Dimension("train.epochs", "int", 1, 5),
)


def _study(tmp_path, **settings) -> optuna.Study:
    return search.open_study(
        StudySettings(name="s", **settings), f"sqlite:///{tmp_path / 'optuna.db'}"
    )


def test_suggest_covers_every_dimension(tmp_path) -> None:
    study = _study(tmp_path, pruner="none")
    seen = []
    search.run_trials(study, SPACE, lambda h: seen.append(h.params) or 1.0, n_trials=4)
    assert len(seen) == 4
    for params in seen:
        assert 1.0 <= params["loss.temperature"] <= 10.0
        assert params["student.width"] in (2, 4)
        assert isinstance(params["train.epochs"], int)


def test_rerun_resumes_until_total_is_reached(tmp_path) -> None:
    calls = []
    search.run_trials(_study(tmp_path), SPACE, lambda h: calls.append(h.number) or 0.5, n_trials=3)
    again = _study(tmp_path)  # a new process would load the same study
    search.run_trials(again, SPACE, lambda h: calls.append(h.number) or 0.5, n_trials=3)
    assert calls == [0, 1, 2]
    search.run_trials(again, SPACE, lambda h: calls.append(h.number) or 0.5, n_trials=5)
    assert calls == [0, 1, 2, 3, 4]
    assert search.finished_trials(again) == 5


def test_pruned_and_failed_trials_are_told_as_such(tmp_path) -> None:
    study = _study(tmp_path)

    def objective(handle: search.TrialHandle) -> float:
        if handle.number == 0:
            raise search.TrialPruned("pruned at epoch 1")
        if handle.number == 1:
            raise RuntimeError("loss exploded")
        return 0.9

    outcomes = search.run_trials(study, SPACE, objective, n_trials=3)
    assert [o.state for o in outcomes] == [TrialState.PRUNED, TrialState.FAIL, TrialState.COMPLETE]
    assert outcomes[1].reason == "RuntimeError: loss exploded"
    assert study.trials[1].user_attrs["fail_reason"] == "RuntimeError: loss exploded"


def test_a_failing_objective_cannot_loop_forever(tmp_path) -> None:
    study = _study(tmp_path)

    def objective(handle):
        raise ValueError("always")

    outcomes = search.run_trials(study, SPACE, objective, n_trials=4)
    assert len(outcomes) == 4
    assert search.finished_trials(study) == 0


def test_median_pruner_stops_a_clearly_worse_trial(tmp_path) -> None:
    study = _study(tmp_path, pruner="median")

    def objective(handle: search.TrialHandle) -> float:
        value = 0.1 if handle.number >= 6 else 0.9
        for epoch in range(6):
            handle.report(epoch, value)
        return value

    outcomes = search.run_trials(study, SPACE, objective, n_trials=7)
    assert outcomes[-1].state == TrialState.PRUNED
    assert "pruned at epoch 2" in outcomes[-1].reason  # first step after the warm-up


def test_interrupt_marks_the_trial_failed_and_propagates(tmp_path) -> None:
    study = _study(tmp_path)

    def objective(handle):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        search.run_trials(study, SPACE, objective, n_trials=2)
    assert [t.state for t in study.trials] == [TrialState.FAIL]
