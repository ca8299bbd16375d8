"""The MLflow tags kdsweep sets: how every worker and resumed run finds its runs again."""

ROLE = "kdsweep.role"  # study | teacher | baseline | trial
STUDY = "kdsweep.study"
TRIAL_NUMBER = "kdsweep.trial_number"
TRIAL_STATE = "kdsweep.trial_state"
REASON = "kdsweep.reason"
RETRY_OF = "kdsweep.retry_of"  # the trial a retried trial re-runs
FUSED_WITH = "kdsweep.fused_with"  # numbers of the trials trained together with this one
KEY = "kdsweep.key"  # content hash of a teacher or baseline run
PARENT = "mlflow.parentRunId"
MODEL_ID = "kdsweep.model_id"  # a trial run's kept student (an MLflow logged model)
REPEAT_OF = "kdsweep.repeat_of"  # the trial a repeat run re-trains with another seed


def ended(state: str, reason: str = "") -> dict[str, str]:
    """The tags of a run that ended: the trial's Optuna state and why, if it did not finish."""
    tags = {TRIAL_STATE: state}
    if reason:
        tags[REASON] = reason
    return tags
