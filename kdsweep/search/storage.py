"""The Optuna storage, and the one module that touches Optuna internals.

Each private name used here is marked with the Optuna version it was checked against;
nothing else in kdsweep reaches past Optuna's public API.

A relational storage beats a heartbeat per running trial: a trial whose worker stops
beating for ``GRACE_PERIOD_S`` is failed and retried once with the same parameters. So is
a trial whose worker died before its first beat (between Optuna's ask and the heartbeat
thread's start), once it is ``GRACE_PERIOD_S`` old: Optuna alone would leave it RUNNING
for ever, and a resumed study would wait for it without end. A trial whose owner process
is gone from this machine (:mod:`kdsweep.search.owners`) is failed and retried at once.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from kdsweep.search import owners

# A running trial's worker writes a heartbeat this often; a trial without one for the
# grace period is failed and retried. Environment variables override both (in seconds).
HEARTBEAT_INTERVAL_S = int(os.environ.get("KDSWEEP_HEARTBEAT_S", "5"))
GRACE_PERIOD_S = int(os.environ.get("KDSWEEP_GRACE_S", "20"))


def make_storage(url: str) -> optuna.storages.BaseStorage | str:
    """The storage of ``url``: relational ones with heartbeats, others as Optuna opens them."""
    if not url.startswith(("sqlite", "postgresql", "mysql")):
        return url
    # kdsweep chose Optuna's experimental heartbeat API on purpose. Set once, before the
    # search threads exist: catch_warnings (see quiet()) is not thread-safe, and with
    # jobs > 1 a note could slip through from another thread's block.
    warnings.filterwarnings(
        "ignore", category=optuna.exceptions.ExperimentalWarning, module=r"kdsweep\.search\."
    )
    warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used")
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _BeatingStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=HEARTBEAT_INTERVAL_S,
            grace_period=GRACE_PERIOD_S,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=1
            ),
        )


class _BeatingStorage(optuna.storages.RDBStorage):
    """Optuna's relational storage, whose stale trials include those that never beat and
    those whose owner process is gone from this machine (no grace period to wait)."""

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        # Optuna 5.0: RDBStorage._get_stale_trial_ids is what fail_stale_trials asks; it
        # skips running trials without a heartbeat row.
        stale = list(super()._get_stale_trial_ids(study_id))
        grace = self.grace_period or 2 * (self.heartbeat_interval or HEARTBEAT_INTERVAL_S)
        started_before = datetime.now() - timedelta(seconds=grace)  # naive local, as Optuna's
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            trial_id = trial._trial_id  # Optuna 5.0: see frozen()
            if trial_id in stale:
                continue
            too_old = trial.datetime_start is not None and trial.datetime_start < started_before
            never_beat = too_old and not self._has_heartbeat(trial_id)
            owner = trial.user_attrs.get(owners.OWNER_ATTR)
            if never_beat or owners.is_gone(owner, trial.number):
                stale.append(trial_id)
        return stale

    def _has_heartbeat(self, trial_id: int) -> bool:
        from optuna.storages._rdb.models import TrialHeartbeatModel  # Optuna 5.0: private
        from optuna.storages._rdb.storage import _create_scoped_session  # Optuna 5.0: private

        with _create_scoped_session(self.scoped_session) as session:
            return TrialHeartbeatModel.where_trial_id(trial_id, session) is not None


@contextmanager
def quiet() -> Iterator[None]:
    """Silence Optuna's notes on heartbeats outside ``optimize`` (kdsweep beats itself)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used")
        yield


def frozen(trial: optuna.Trial) -> FrozenTrial:
    """The trial as the storage holds it now."""
    # Optuna 5.0: Trial._trial_id is the storage's id of the trial (no public accessor).
    return trial.storage.get_trial(trial._trial_id)


def heartbeat(trial: optuna.Trial, study: optuna.Study) -> AbstractContextManager[Any]:
    """A context in which a thread beats the trial's heartbeat."""
    from optuna.storages._heartbeat import get_heartbeat_thread  # Optuna 5.0: private

    # Optuna 5.0: Study._storage is the study's storage object (no public accessor).
    storage = study._storage
    return get_heartbeat_thread(trial._trial_id, storage)  # Optuna 5.0: see frozen()


def fail_stale_trials(study: optuna.Study) -> None:
    """Fail (and retry) trials whose heartbeat stopped, when the storage beats them."""
    from optuna.storages._heartbeat import is_heartbeat_enabled  # Optuna 5.0: private

    if is_heartbeat_enabled(study._storage):  # Optuna 5.0: see heartbeat()
        with quiet():
            optuna.storages.fail_stale_trials(study)


def retried_trial(trial: optuna.Trial) -> int | None:
    """The number of the trial this one retries, if it is a retry."""
    with quiet():
        return optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(frozen(trial))


def with_fixed_params(study: optuna.Study, fixed: Mapping[str, Any]) -> optuna.Study:
    """The same study (same storage, same trials) seen through a sampler that keeps the
    ``fixed`` params at their values and samples the others as the study's sampler does."""
    with quiet():
        return optuna.Study(
            study_name=study.study_name,
            storage=study._storage,  # Optuna 5.0: private, see heartbeat()
            sampler=optuna.samplers.PartialFixedSampler(dict(fixed), study.sampler),
        )


def save_intermediate_values(trial: optuna.Trial, values: Mapping[int, float]) -> None:
    """Store per-epoch values as the trial's intermediate values (Optuna's dashboard and
    ``FrozenTrial.intermediate_values`` read them), written in batches as the rest of a
    trial's per-epoch values. Single-objective studies only: in a multi-objective one
    (Optuna 5.0) ``Trial.report`` raises ``NotImplementedError``, and a pruned trial with
    intermediate values makes the TPE sampler fail at the next suggestion
    (``_get_pruned_trial_score`` reads ``study.direction``: ``RuntimeError: A single
    direction cannot be retrieved from a multi-objective study``)."""
    storage, trial_id = trial.storage, trial._trial_id  # private: checked on Optuna 5.0
    # Optuna 5.0: _CachedStorage._backend is the storage it wraps; it passes intermediate
    # values straight through and reads unfinished trials back from it.
    backend = getattr(storage, "_backend", storage)
    if isinstance(backend, optuna.storages.RDBStorage) and len(values) > 1:
        _save_in_one_transaction(backend, trial_id, values)
        return
    for step, value in values.items():
        storage.set_trial_intermediate_value(trial_id, step, value)


def _save_in_one_transaction(
    storage: optuna.storages.RDBStorage, trial_id: int, values: Mapping[int, float]
) -> None:
    """A trial's intermediate values written in one transaction, not one each (a trial's
    20 epochs cost 20 commits, each a file sync on SQLite)."""
    from optuna.storages._rdb.storage import _create_scoped_session  # Optuna 5.0: private

    with _create_scoped_session(storage.scoped_session, True) as session:
        for step, value in values.items():
            # Optuna 5.0: private; what set_trial_intermediate_value runs before its commit
            storage._set_trial_intermediate_value_without_commit(session, trial_id, step, value)
