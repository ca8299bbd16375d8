"""The ask-and-tell loop: ask Optuna for trials, hand them to the training side, tell
Optuna each outcome. Shared by the threads of one process (``jobs``) and by worker
processes on one study (through the storage).

Knows nothing of PyTorch or MLflow.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from kdsweep.faults import fault_point
from kdsweep.search import owners, storage
from kdsweep.search.study import finished_trials, is_surplus, state_counts
from kdsweep.search.trial import (
    InterruptedAfter,
    Outcome,
    TrialHandle,
    fail,
    sample_params,
    tell,
)
from kdsweep.study.goals import DEFAULT_GOALS, Constraint, Goal
from kdsweep.study.space import Dimension

WAIT_S = 1.0  # how often an idle worker looks again while others finish the study

# objective(handle) -> the trial's recorded metrics (val_accuracy, params, ...)
Objective = Callable[[TrialHandle], Mapping[str, float]]
# group objective(handles) -> per trial, its metrics or the exception that ended it
GroupObjective = Callable[[Sequence[TrialHandle]], Sequence[Mapping[str, float] | Exception]]
# launch(handles) starts the trials (e.g. sends them to a trainer process) and returns
# what waits for them: per trial, its metrics or the exception that ended it
Launch = Callable[[Sequence[TrialHandle]], Callable[[], Sequence[Mapping[str, float] | Exception]]]


@dataclass(frozen=True)
class Fusion:
    """Trials asked and trained in groups of ``size``.

    :param shared: searched paths every member of a group takes from the group's first
        trial (the student's architecture, batch size, ...); the sampler chooses the
        other params of each member.
    """

    size: int
    objective: GroupObjective
    shared: tuple[str, ...] = ()


@dataclass(frozen=True)
class LoopSettings:
    """What the loop searches and until when.

    :param n_trials: finished (complete or pruned) trials the study should hold.
    :param timeout: seconds after which no trial is started.
    :param jobs: trials (or groups) asked, trained and told at the same time by threads.
    """

    space: tuple[Dimension, ...]
    n_trials: int
    timeout: float | None = None
    goals: tuple[Goal, ...] = DEFAULT_GOALS
    constraints: tuple[Constraint, ...] = ()
    pruner: optuna.pruners.BasePruner | None = None
    fusion: Fusion | None = None
    jobs: int = 1
    # The sampler for the random stream that starts at this trial number: each process
    # samples from its own stream, chosen by its first trial (see _TrialLoop._next).
    sampler_for: Callable[[int], optuna.samplers.BaseSampler] | None = None


def run_trials(
    study: optuna.Study,
    settings: LoopSettings,
    objective: Objective | None = None,
    *,
    launch: Launch | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
    stop: Callable[[], bool] = lambda: False,
) -> list[Outcome]:
    """Run trials until the study holds ``settings.n_trials`` finished ones, the timeout
    passes or ``stop()`` says so. Several processes may run this on one study: together
    they finish ``n_trials`` (the first ``n_trials`` trials by number that did not fail
    win; a trial a dead worker left is failed after the heartbeat grace period and
    retried once).

    With ``settings.fusion``, trials are asked in groups and trained together; each is
    still told and reported on its own. With ``settings.jobs`` > 1, that many trials (or
    groups) are asked, told and waited for at the same time by threads of this process.

    With ``launch``, trials are started by it (``objective`` and ``fusion.objective`` are
    not called; a group of ``fusion.size`` is still asked at once), and each thread starts
    its next trials before it waits for the previous ones: the trainer goes from one to
    the next while this process tells and logs the first. They are asked without the
    results of the trials still running, as in any parallel search.

    Each call makes at most as many attempts as trials were missing when it began (plus
    retries), so a failing objective cannot loop forever; a failure stays inside its trial.
    Ctrl-C marks the running trials failed and propagates; trials of a launch that had
    ended before it (its wait raises :class:`InterruptedAfter` with their results) are
    told as they ended.
    """
    depth = 1  # trials a thread has started at once: 2 when a launch trains ahead
    if launch is not None:
        depth = 2
    elif objective is not None:
        launch = _in_place(objective, settings.fusion)
    else:
        raise ValueError("run_trials needs an objective or a launch")
    loop = _TrialLoop(study, settings, launch, on_outcome, stop, depth)
    jobs = settings.jobs
    if jobs == 1:
        loop.run()
        return loop.outcomes
    # Each thread says itself when it is done: after a KeyboardInterrupt has cut into a
    # Thread.join, CPython 3.11 may mark that thread stopped while it still runs (its
    # join then returns at once), and the trainers would be closed under its feet.
    done = [threading.Event() for _ in range(jobs)]
    threads = [
        threading.Thread(target=loop.run_in_thread, args=(event,), daemon=True) for event in done
    ]
    for thread in threads:
        thread.start()
    try:
        for event in done:
            while not event.wait(0.1):  # short waits, so that Ctrl-C reaches this thread
                pass
    except KeyboardInterrupt:
        loop.interrupted.set()  # each thread fails its running trial at the next epoch
        for event in done:
            event.wait()
        raise
    if loop.errors:
        raise loop.errors[0]
    return loop.outcomes


def _in_place(objective: Objective, fusion: Fusion | None) -> Launch:
    """A launch that trains nothing until it is waited for: then ``objective`` runs each
    trial in turn, or ``fusion.objective`` the group."""

    def launch(
        handles: Sequence[TrialHandle],
    ) -> Callable[[], Sequence[Mapping[str, float] | Exception]]:
        def wait() -> Sequence[Mapping[str, float] | Exception]:
            if len(handles) == 1 or fusion is None:
                return [_guarded(objective, handle) for handle in handles]
            return fusion.objective(handles)

        return wait

    return launch


@dataclass
class _Started:
    """Trials started and not yet told: their heartbeats beat until they are."""

    handles: Sequence[TrialHandle]
    beating: ExitStack
    wait: Callable[[], Sequence[Mapping[str, float] | Exception]]


class _TrialLoop:
    """The ask-train-tell loop; one instance is shared by the threads of one process."""

    def __init__(
        self,
        study: optuna.Study,
        settings: LoopSettings,
        launch: Launch,
        on_outcome: Callable[[Outcome], None] | None,
        stop: Callable[[], bool],
        depth: int,
    ) -> None:
        self.study, self.settings, self.launch = study, settings, launch
        self.on_outcome, self.stop = on_outcome, stop
        self.depth = depth  # trials (or groups) a thread may have started at a time
        self.started = time.monotonic()
        self.stale_seen = -math.inf  # when stale trials were last looked for
        self.attempts = max(0, settings.n_trials - finished_trials(study))
        self.outcomes: list[Outcome] = []
        self.errors: list[BaseException] = []
        self.interrupted = threading.Event()
        self.lock = threading.Lock()
        self.own_stream = settings.sampler_for is None  # whether the sampler is this process's

    def run_in_thread(self, done: threading.Event) -> None:
        """:meth:`run`, keeping what ends the thread for the caller to re-raise; ``done``
        is set when the thread has finished with its trials."""
        try:
            self.run()
        except BaseException as exc:  # handed to the main thread, which re-raises it
            self.errors.append(exc)
            self.interrupted.set()
        finally:
            done.set()

    def run(self) -> None:
        """Ask, start, wait and tell until the study is done or told to stop."""
        running: deque[_Started] = deque()
        try:
            while True:
                handles: list[TrialHandle] | None = []
                while len(running) < self._depth() and self._going():
                    with self.lock:
                        handles = self._next()
                    if not handles:
                        break
                    running.append(self._start(handles))
                if running:
                    self._finish(running.popleft())
                elif handles is None or not self._going():
                    return
                else:
                    time.sleep(WAIT_S)  # the rest is running elsewhere; it may still fail and retry
        except BaseException:
            self.interrupted.set()  # what this thread started stops at its next epoch
            for started in running:
                with contextlib.suppress(BaseException):
                    self._finish(started)
            raise

    def _depth(self) -> int:
        """Trials a thread may have started. The last ones are not taken ahead: the thread
        that is free first takes each, so the threads finish close together."""
        return self.depth if self.attempts > self.settings.jobs else 1

    def _going(self) -> bool:
        return not self.stop() and not self.interrupted.is_set()

    def _start(self, handles: list[TrialHandle]) -> _Started:
        beating = ExitStack()  # Optuna's heartbeats: other workers see when this one dies
        for handle in handles:
            beating.enter_context(storage.heartbeat(handle.trial, self.study))
        try:
            return _Started(handles, beating, self.launch(handles))
        except BaseException as exc:
            with beating:
                fail(self.study, handles, f"not started: {type(exc).__name__}: {exc}")
            raise

    def _finish(self, started: _Started) -> None:
        """Wait for the trials and tell Optuna each outcome. On Ctrl-C, the trials that had
        ended before it (:class:`InterruptedAfter`) are told as usual, the others failed."""
        with started.beating:
            try:
                results = started.wait()
            except KeyboardInterrupt as exc:
                ended = exc.results if isinstance(exc, InterruptedAfter) else {}
                cut = [h for h in started.handles if h.number not in ended]
                fail(self.study, cut, "interrupted")
                done = [h for h in started.handles if h.number in ended]
                self._report(self._tell_all(done, [ended[h.number] for h in done]))
                raise
            outcomes = self._tell_all(started.handles, results)
        self._report(outcomes)

    def _tell_all(
        self, handles: Sequence[TrialHandle], results: Sequence[Mapping[str, float] | Exception]
    ) -> list[Outcome]:
        """Tell Optuna each trial's result."""
        settings = self.settings
        outcomes = []
        for handle, result in zip(handles, results, strict=True):
            handle.save()
            outcomes.append(
                tell(self.study, handle.trial, result, settings.goals, settings.constraints)
            )
        return outcomes

    def _report(self, outcomes: Sequence[Outcome]) -> None:
        """Keep the outcomes and pass them on."""
        with self.lock:
            for outcome in outcomes:
                self.outcomes.append(outcome)
                if self.on_outcome is not None:
                    self.on_outcome(outcome)

    def _own_stream(self, first_number: int) -> None:
        """Give this process its own random stream, seeded from the study's seed and its
        first trial number: processes that share a study (and its seed) never sample the
        same params, and a fresh single process (first trial 0) samples as before."""
        if not self.own_stream and self.settings.sampler_for is not None:
            self.study.sampler = self.settings.sampler_for(first_number)
        self.own_stream = True

    def _next(self) -> list[TrialHandle] | None:
        """The next trials to train, ``[]`` to wait for other workers, ``None`` when done."""
        settings, study = self.settings, self.study
        if self.attempts <= 0:
            return None
        if settings.timeout is not None and time.monotonic() - self.started >= settings.timeout:
            return None
        # A dead worker's trial goes stale after the grace period: looking once per
        # heartbeat interval finds it in time, without a query per ask.
        now = time.monotonic()
        if now - self.stale_seen >= storage.HEARTBEAT_INTERVAL_S:
            storage.fail_stale_trials(study)
            self.stale_seen = now
        counts = state_counts(study)
        if counts["finished"] >= settings.n_trials:
            return None
        free = settings.n_trials - counts["finished"] - counts["running"]
        if free <= 0 and not counts["waiting"]:
            return []
        fusion = settings.fusion
        size = min(fusion.size, self.attempts, max(free, 1)) if fusion else 1
        handles = _ask_group(study, settings, size, self._own_stream)
        live = []
        for handle in handles:
            if is_surplus(study, handle.number, settings.n_trials):
                handle.trial.set_user_attr(
                    "fail_reason", "surplus: n_trials was reached by other workers"
                )
                study.tell(handle.trial, state=TrialState.FAIL)
            else:
                handle.interrupted = self.interrupted
                live.append(handle)
        self.attempts -= len(live)
        return live


def _ask_group(
    study: optuna.Study, settings: LoopSettings, size: int, asked: Callable[[int], None]
) -> list[TrialHandle]:
    """``size`` new trials; after the first, the sampler keeps the fusion's shared params
    fixed to the first trial's values. ``asked(number)`` runs before any param is sampled."""
    pruner = settings.pruner or optuna.pruners.NopPruner()
    with storage.quiet():
        first = study.ask()
    _stamp(first)
    fault_point("after_ask")  # a worker that dies here leaves a trial that never beat
    asked(first.number)
    handles = [TrialHandle(first, sample_params(first, settings.space), pruner)]
    if size > 1 and settings.fusion is not None:
        params = handles[0].params
        fixed = {path: params[path] for path in settings.fusion.shared if path in params}
        followers = storage.with_fixed_params(study, fixed)
        with storage.quiet():
            for _ in range(size - 1):
                trial = followers.ask()
                _stamp(trial)
                handles.append(TrialHandle(trial, sample_params(trial, settings.space), pruner))
    return handles


def _stamp(trial: optuna.Trial) -> None:
    """Record this process as the trial's owner: for people (host and PID) and, should it
    die, for a run on this machine to fail the trial at once (:mod:`kdsweep.search.owners`)."""
    trial.set_user_attr(owners.WORKER_ATTR, owners.worker())
    owner = owners.stamp(trial.number)
    if owner:
        trial.set_user_attr(owners.OWNER_ATTR, owner)


def _guarded(objective: Objective, handle: TrialHandle) -> Mapping[str, float] | Exception:
    try:
        return objective(handle)
    except Exception as exc:
        return exc
