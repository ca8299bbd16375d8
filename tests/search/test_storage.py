"""The Optuna storage as kdsweep writes it."""

from __future__ import annotations

from pathlib import Path

import optuna
from sqlalchemy import event

from kdsweep.search.storage import make_storage, save_intermediate_values


def test_a_trials_epoch_values_are_stored_in_one_transaction(tmp_path: Path) -> None:
    storage = make_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()
    commits: list[int] = []
    event.listen(storage.engine, "commit", lambda connection: commits.append(1))
    values = {epoch: 0.5 + epoch / 100 for epoch in range(20)}
    save_intermediate_values(trial, values)
    assert len(commits) == 1  # not one per epoch
    save_intermediate_values(trial, {20: 0.9})  # later ones join them
    study.tell(trial, 0.9)
    stored = optuna.load_study(study_name="s", storage=storage).trials[0].intermediate_values
    assert stored == {**values, 20: 0.9}


def test_values_saved_again_are_overwritten_not_duplicated(tmp_path: Path) -> None:
    storage = make_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()
    save_intermediate_values(trial, {0: 0.1, 1: 0.2})
    save_intermediate_values(trial, {1: 0.3, 2: 0.4})
    assert study.trials[0].intermediate_values == {0: 0.1, 1: 0.3, 2: 0.4}
