"""A trial's owner process: stamped at ask, and a trial whose owner is gone from this
machine is failed (and retried) at once, without waiting out the heartbeat grace period;
owners that cannot be checked from here are left to the heartbeat."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from kdsweep.search import owners
from kdsweep.search.loop import LoopSettings, run_trials
from kdsweep.search.storage import fail_stale_trials, make_storage
from kdsweep.study.space import Dimension

if not Path("/proc/self/stat").exists():
    pytest.skip("owners are read from /proc (Linux)", allow_module_level=True)


def _stamp_of_a_finished_process(number: int) -> str:
    """The stamp a short-lived process made for trial ``number``."""
    code = f"from kdsweep.search import owners; print(owners.stamp({number}))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return done.stdout.strip()


def test_this_process_is_not_gone_and_a_finished_one_is() -> None:
    mine = owners.stamp(3)
    assert mine.endswith("#3") and not owners.is_gone(mine, 3)
    ended = _stamp_of_a_finished_process(3)
    assert ended.rsplit("/", 2)[0] == mine.rsplit("/", 2)[0]  # same machine and namespace
    assert owners.is_gone(ended, 3)
    assert not owners.is_gone(ended, 4)  # copied to trial 4 (a retry): not its owner


def test_an_ended_process_not_yet_reaped_is_gone() -> None:
    code = "from kdsweep.search import owners; print(owners.stamp(0), flush=True); input()"
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    owner = child.stdout.readline().strip()
    assert not owners.is_gone(owner, 0)
    child.kill()  # not waited for: a zombie until the end of the test
    deadline = time.monotonic() + 10
    while not owners.is_gone(owner, 0):
        assert time.monotonic() < deadline, "a killed child still counts as running"
        time.sleep(0.05)
    child.wait()


def test_a_reused_pid_is_gone_and_unknown_owners_are_not() -> None:
    machine, pid, start = owners.this_process().rsplit("/", 2)
    assert owners.is_gone(f"{machine}/{pid}/{int(start) - 1}#0", 0)  # same PID, newer process
    assert not owners.is_gone(f"another-boot/pid:[1]/{pid}/1#0", 0)  # another machine
    assert not owners.is_gone(None, 0) and not owners.is_gone("", 0)
    assert not owners.is_gone("x/y#0", 0)


def test_a_trial_of_a_gone_owner_is_failed_and_retried_at_once(tmp_path: Path) -> None:
    storage = make_storage(f"sqlite:///{tmp_path / 'optuna.db'}")  # grace: 20 s
    study = optuna.create_study(storage=storage, study_name="s")
    dead, foreign, alive = study.ask(), study.ask(), study.ask()
    dead.set_user_attr(owners.OWNER_ATTR, _stamp_of_a_finished_process(dead.number))
    foreign.set_user_attr(owners.OWNER_ATTR, f"another-boot/pid:[1]/1/1#{foreign.number}")
    alive.set_user_attr(owners.OWNER_ATTR, owners.stamp(alive.number))
    fail_stale_trials(study)
    states = [t.state for t in study.trials]
    assert states[:3] == [TrialState.FAIL, TrialState.RUNNING, TrialState.RUNNING]
    assert states[3:] == [TrialState.WAITING]  # the retry of the dead owner's trial
    retry = study.ask()  # asked, before its new owner stamps it: the copied stamp is not its
    assert retry.number == 3 and retry.user_attrs[owners.OWNER_ATTR].endswith(f"#{dead.number}")
    fail_stale_trials(study)
    assert study.trials[3].state == TrialState.RUNNING


def test_the_loop_stamps_each_trial_it_asks(tmp_path: Path) -> None:
    study = optuna.create_study(storage=make_storage(f"sqlite:///{tmp_path / 'o.db'}"))
    space = (Dimension("loss.temperature", "float", 1.0, 10.0),)
    run_trials(study, LoopSettings(space, 2), lambda handle: {"val_accuracy": 0.5})
    assert [t.user_attrs[owners.OWNER_ATTR] for t in study.trials] == [
        owners.stamp(0),
        owners.stamp(1),
    ]
    assert {t.user_attrs[owners.WORKER_ATTR] for t in study.trials} == {owners.worker()}
