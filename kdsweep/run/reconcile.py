"""After a crash the two stores can disagree: a process killed between its MLflow run's
end and Optuna's tell leaves a FINISHED run for a trial Optuna later fails as stale, and
one killed mid-trial leaves a run RUNNING for ever. Optuna's state is the truth; each
trial's MLflow run is brought to it, at the start and the end of every run."""

from __future__ import annotations

from typing import Any

from optuna.trial import TrialState

from kdsweep.track import tags
from kdsweep.track.tracker import Tracker

# Optuna's final state -> the MLflow statuses that agree with it, the first one preferred.
AGREEING = {
    TrialState.COMPLETE: ("FINISHED",),
    TrialState.PRUNED: ("KILLED",),
    TrialState.FAIL: ("FAILED", "KILLED"),
}
DIED = "its process ended before both stores were told (no heartbeat, failed as stale)"


def reconcile(optuna_study: Any, tracker: Tracker) -> int:
    """End every trial run whose status or state tag disagrees with its finished Optuna
    trial; returns how many were corrected. Trials still running are left alone."""
    trials = {t.number: t for t in optuna_study.get_trials(deepcopy=False)}
    corrected = 0
    for run in tracker.find_runs(role="trial"):
        number = run.data.tags.get(tags.TRIAL_NUMBER, "")
        trial = trials.get(int(number)) if number.isdigit() else None
        if trial is None or trial.state not in AGREEING:
            continue
        statuses = AGREEING[trial.state]
        if run.info.status in statuses and run.data.tags.get(tags.TRIAL_STATE) == trial.state.name:
            continue
        reason = trial.user_attrs.get("fail_reason") or trial.user_attrs.get("prune_reason") or DIED
        metrics = trial.user_attrs.get("metrics") if trial.state == TrialState.COMPLETE else None
        tracker.end_run(run.info.run_id, statuses[0], metrics, tags.ended(trial.state.name, reason))
        corrected += 1
    return corrected
