from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from kdsweep.search.loop import Fusion, LoopSettings, run_trials
from kdsweep.search.pruners import make_pruner
from kdsweep.search.samplers import make_sampler
from kdsweep.search.study import finished_trials, open_study
from kdsweep.search.trial import InterruptedAfter, TrialHandle, TrialPruned
from kdsweep.study.goals import Constraint, Goal
from kdsweep.study.space import Dimension
from kdsweep.study.study import StudySettings

SPACE = (
    Dimension("loss.temperature", "float", 1.0, 10.0, log=True),
    Dimension("student.width", "categorical", choices=(2, 4)),
    Dimension("train.epochs", "int", 1, 5),
)
PATH = Path("study.toml")


def _study(tmp_path, **settings) -> tuple[optuna.Study, StudySettings]:
    study_settings = StudySettings(name="s", **settings)
    sampler = make_sampler(study_settings, SPACE, PATH)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    return open_study(study_settings, storage, sampler), study_settings


def _run(study: optuna.Study, objective, n_trials: int, **settings) -> list:
    """The loop over ``SPACE`` with ``objective`` in this process."""
    return run_trials(study, LoopSettings(SPACE, n_trials, **settings), objective)


def _accuracy(value: float):
    return lambda handle: {"val_accuracy": value}


def test_suggest_covers_every_dimension(tmp_path) -> None:
    study, _ = _study(tmp_path)
    seen = []
    _run(study, lambda h: seen.append(h.params) or {"val_accuracy": 1}, 4)
    assert len(seen) == 4
    for params in seen:
        assert 1.0 <= params["loss.temperature"] <= 10.0
        assert params["student.width"] in (2, 4)
        assert isinstance(params["train.epochs"], int)


def test_rerun_resumes_until_total_is_reached(tmp_path) -> None:
    calls = []

    def objective(handle):
        calls.append(handle.number)
        return {"val_accuracy": 0.5}

    _run(_study(tmp_path)[0], objective, n_trials=3)
    again, _ = _study(tmp_path)  # a new process would load the same study
    _run(again, objective, n_trials=3)
    assert calls == [0, 1, 2]
    _run(again, objective, n_trials=5)
    assert calls == [0, 1, 2, 3, 4]
    assert finished_trials(again) == 5


def test_pruned_and_failed_trials_are_told_as_such(tmp_path) -> None:
    study, _ = _study(tmp_path)

    def objective(handle: TrialHandle) -> dict:
        if handle.number == 0:
            raise TrialPruned("pruned at epoch 1")
        if handle.number == 1:
            raise RuntimeError("loss exploded")
        return {"val_accuracy": 0.9}

    outcomes = _run(study, objective, n_trials=3)
    assert [o.state for o in outcomes] == [TrialState.PRUNED, TrialState.FAIL, TrialState.COMPLETE]
    assert outcomes[1].reason == "RuntimeError: loss exploded"
    assert study.trials[1].user_attrs["fail_reason"] == "RuntimeError: loss exploded"


def test_a_failing_objective_cannot_loop_forever(tmp_path) -> None:
    study, _ = _study(tmp_path)

    def objective(handle):
        raise ValueError("always")

    assert len(_run(study, objective, n_trials=4)) == 4
    assert finished_trials(study) == 0


def _reporting(low_from: int, low_width: int | None = None):
    """Six epochs at 0.9, or at 0.1 from trial ``low_from`` on (for ``low_width`` only)."""

    def objective(handle: TrialHandle) -> dict:
        low = handle.number >= low_from and low_width in (None, handle.params["student.width"])
        value = 0.1 if low else 0.9
        for epoch in range(6):
            handle.report(epoch, value)
        return {"val_accuracy": value, "params": 100.0 * handle.params["student.width"]}

    return objective


def test_median_pruner_stops_a_clearly_worse_trial(tmp_path) -> None:
    study, settings = _study(tmp_path, pruner="median")
    pruner = make_pruner(settings, PATH)
    outcomes = _run(study, _reporting(24), n_trials=25, pruner=pruner)
    assert outcomes[-1].state == TrialState.PRUNED
    assert "pruned at epoch 2" in outcomes[-1].reason  # first step after the warm-up


@pytest.mark.parametrize("sampler", ["tpe", "nsga2"])
def test_multi_objective_study_prunes_within_a_width(tmp_path, sampler: str) -> None:
    goals = (Goal("val_accuracy", "maximize"), Goal("params", "minimize"))
    study, settings = _study(tmp_path, objectives=goals, sampler=sampler)
    pruner = make_pruner(settings, PATH)
    outcomes = _run(study, _reporting(14), n_trials=20, goals=goals, pruner=pruner)
    assert TrialState.PRUNED in [o.state for o in outcomes[14:]]  # and the sampler goes on
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert all(len(t.values) == 2 for t in complete)
    assert study.best_trials  # the Pareto front


def test_pruner_compares_only_trials_of_the_same_width(tmp_path) -> None:
    # Width 2 always scores 0.1 and width 4 always 0.9: a pruner comparing across widths
    # would stop every width-2 trial; comparing within width 2 it stops none.
    study, settings = _study(tmp_path, pruner="median")
    pruner = make_pruner(settings, PATH)
    outcomes = _run(study, _reporting(0, low_width=2), n_trials=20, pruner=pruner)
    widths = {t.number: t.params["student.width"] for t in study.trials}
    assert any(widths[o.number] == 2 for o in outcomes)
    assert all(o.state == TrialState.COMPLETE for o in outcomes)


def test_constraints_mark_infeasible_trials(tmp_path) -> None:
    goals = (Goal("val_accuracy", "maximize"), Goal("params", "minimize"))
    constraint = Constraint("params", "<=", 300.0)
    study, _ = _study(tmp_path, objectives=goals, constraints=(constraint,))
    _run(study, _reporting(99), n_trials=8, goals=goals, constraints=(constraint,))
    front = study.best_trials
    assert front and all(t.params["student.width"] == 2 for t in front)  # 200 <= 300 < 400


def test_interrupt_marks_the_trial_failed_and_propagates(tmp_path) -> None:
    study, _ = _study(tmp_path)

    def objective(handle):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(study, objective, n_trials=2)
    assert [t.state for t in study.trials] == [TrialState.FAIL]


def test_an_interrupt_after_part_of_a_launch_ended_tells_that_part(tmp_path) -> None:
    """Ctrl-C while a launch is waited for, after some of its trials ended (their runs
    recorded, their students kept): those are told as they ended; the rest fail."""
    study, _ = _study(tmp_path)
    launched: list[list[int]] = []

    def launch(handles):
        numbers = [h.number for h in handles]
        launched.append(numbers)

        def wait():
            if numbers[0] == 0:  # the first launch: its first trial had ended, then Ctrl-C
                raise InterruptedAfter({0: {"val_accuracy": 0.7}, 1: TrialPruned("epoch 1")})
            raise KeyboardInterrupt  # the next, started ahead: nothing of it had ended

        return wait

    told = []
    settings = LoopSettings(SPACE, 6, fusion=Fusion(3, lambda handles: []))
    with pytest.raises(KeyboardInterrupt):
        run_trials(study, settings, launch=launch, on_outcome=told.append)
    assert launched == [[0, 1, 2], [3, 4, 5]]  # the second launch was started ahead
    states = {t.number: t.state for t in study.trials}
    assert states[0] == TrialState.COMPLETE and study.trials[0].values == [0.7]
    assert states[1] == TrialState.PRUNED
    assert [states[n] for n in (2, 3, 4, 5)] == [TrialState.FAIL] * 4
    assert study.trials[2].user_attrs["fail_reason"] == "interrupted"
    assert [(o.number, o.state) for o in told] == [
        (0, TrialState.COMPLETE),
        (1, TrialState.PRUNED),
    ]
