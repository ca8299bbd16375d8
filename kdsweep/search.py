"""The Optuna side: study, sampler, pruner and the ask-and-tell loop.

Knows nothing of PyTorch or MLflow: it asks for trial parameters, hands them to an
objective and tells Optuna the outcome.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.storages._heartbeat import get_heartbeat_thread, is_heartbeat_enabled
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from kdsweep.config import StudySettings
from kdsweep.goals import DEFAULT_GOALS, Constraint, Goal
from kdsweep.space import Dimension

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# A running trial's worker writes a heartbeat this often; a trial without one for the
# grace period is failed and retried. Environment variables override both (in seconds).
HEARTBEAT_INTERVAL_S = int(os.environ.get("KDSWEEP_HEARTBEAT_S", "5"))
GRACE_PERIOD_S = int(os.environ.get("KDSWEEP_GRACE_S", "20"))
WAIT_S = 1.0  # how often an idle worker looks again while others finish the study


class TrialPruned(optuna.TrialPruned):
    """Raised by :meth:`TrialHandle.report` when the pruner stops a trial."""


WIDTH = "student.width"


EPOCH_VALUES = "epoch_val_accuracy"  # user attr: {epoch: validation accuracy}


def _with_epoch_values(
    trial: FrozenTrial, values: Mapping[str, float] | None = None
) -> FrozenTrial:
    """A copy of ``trial`` whose intermediate values are its per-epoch accuracies (``values``,
    or those stored in its user attributes)."""
    view = copy.copy(trial)
    values = trial.user_attrs.get(EPOCH_VALUES, {}) if values is None else values
    view.intermediate_values = {int(step): value for step, value in values.items()}
    return view


class _SameWidth:
    """The study as a pruner sees it: only trials of one student width, with their
    per-epoch validation accuracy as intermediate values, maximised."""

    def __init__(self, study: optuna.Study, width: Any) -> None:
        self._study = study
        self._width = width

    @property
    def direction(self) -> StudyDirection:
        return StudyDirection.MAXIMIZE

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list[FrozenTrial]:
        trials = self._study.get_trials(deepcopy=deepcopy, states=states)
        return [
            _with_epoch_values(t) for t in trials if t.params.get(WIDTH, self._width) == self._width
        ]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)


class _Fixed:
    """A study view whose complete trials are a list read earlier."""

    def __init__(self, study: Any, complete: list[FrozenTrial]) -> None:
        self._study = study
        self._complete = complete

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list[FrozenTrial]:
        if tuple(states or ()) != (TrialState.COMPLETE,):
            return self._study.get_trials(deepcopy=deepcopy, states=states)
        return self._complete

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)


PEERS_REFRESH_S = 5.0  # how old the complete trials a median pruner compares with may be
EPOCH_VALUES_SAVE_S = 5.0  # a running trial's per-epoch values reach the storage this often


@dataclass
class TrialHandle:
    """What the objective sees of an Optuna trial."""

    trial: optuna.Trial
    params: dict[str, Any]
    pruner: optuna.pruners.BasePruner = field(default_factory=optuna.pruners.NopPruner)
    epoch_values: dict[str, float] = field(default_factory=dict)
    interrupted: threading.Event | None = None  # set when another thread saw Ctrl-C
    _frozen: FrozenTrial | None = None
    _peers: list[FrozenTrial] | None = None
    _peers_at: float = 0.0
    _saved_at: float | None = None

    @property
    def number(self) -> int:
        """The Optuna trial number."""
        return self.trial.number

    def report(self, step: int, value: float) -> None:
        """Record validation accuracy at ``step``; raises :class:`TrialPruned` if the pruner,
        comparing with trials of the same width, stops the trial.

        The values are kept as a user attribute, not as Optuna intermediate values: Optuna
        refuses those in multi-objective studies, and its TPE sampler then fails on them.
        Unless the pruner reads running trials, they are written after the first epoch, then
        at most every ``EPOCH_VALUES_SAVE_S`` and when the trial ends (:meth:`save`).
        """
        if self.interrupted is not None and self.interrupted.is_set():
            raise KeyboardInterrupt("interrupted")
        self.epoch_values[str(step)] = value
        if not self._others_read_values():
            # Written after the first epoch (the trial is seen training), then at most every
            # EPOCH_VALUES_SAVE_S, and when it ends: not a storage write per short epoch.
            now = time.monotonic()
            if self._saved_at is None or now - self._saved_at >= EPOCH_VALUES_SAVE_S:
                self.save()
                self._saved_at = now
        if isinstance(self.pruner, optuna.pruners.NopPruner):
            return
        study: Any = _SameWidth(self.trial.study, self.params.get(WIDTH))
        if isinstance(self.pruner, optuna.pruners.PercentilePruner):
            # Median and percentile pruners compare with complete trials only: this trial's
            # values can stay in memory until it ends, its other fields do not change, and
            # the complete trials are read again only every PEERS_REFRESH_S.
            if self._frozen is None:
                self._frozen = self.trial.storage.get_trial(self.trial._trial_id)
            frozen = _with_epoch_values(self._frozen, self.epoch_values)
            if self._peers is None or time.monotonic() - self._peers_at > PEERS_REFRESH_S:
                self._peers = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                self._peers_at = time.monotonic()
            study = _Fixed(study, self._peers)
        else:  # e.g. successive halving: other running trials read these; rungs change
            self.trial.set_user_attr(EPOCH_VALUES, self.epoch_values)
            frozen = _with_epoch_values(self.trial.storage.get_trial(self.trial._trial_id))
        if self.pruner.prune(study, frozen):
            raise TrialPruned(f"pruned at epoch {step} (val_accuracy {value:.4f})")

    def save(self) -> None:
        """Write the per-epoch values that :meth:`report` kept in memory."""
        if self.epoch_values and not self._others_read_values():
            self.trial.set_user_attr(EPOCH_VALUES, self.epoch_values)

    def _others_read_values(self) -> bool:
        """Whether the pruner reads running trials' values (then written every epoch):
        median and percentile pruners compare with complete trials only."""
        kinds = optuna.pruners.NopPruner | optuna.pruners.PercentilePruner
        return not isinstance(self.pruner, kinds)


# objective(handle) -> the trial's recorded metrics (val_accuracy, params, ...)
Objective = Callable[[TrialHandle], Mapping[str, float]]


def open_study(
    settings: StudySettings, storage: str, sampler: optuna.samplers.BaseSampler
) -> optuna.Study:
    """Create the study, or load it when it exists (so a rerun resumes it)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        study_name=settings.name,
        storage=make_storage(storage),
        sampler=sampler,
        pruner=optuna.pruners.NopPruner(),  # kdsweep prunes per width, see TrialHandle.report
        directions=[goal.direction for goal in settings.objectives],
        load_if_exists=True,
    )


def finished_trials(study: optuna.Study) -> int:
    """Trials that count towards ``n_trials``: complete or pruned."""
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def suggest(trial: optuna.Trial, space: Sequence[Dimension]) -> dict[str, Any]:
    """Ask the sampler for a value of every searched setting (path -> value)."""
    params: dict[str, Any] = {}
    for dim in space:
        if dim.kind == "categorical":
            params[dim.path] = trial.suggest_categorical(dim.path, list(dim.choices))
        elif dim.kind == "int":
            params[dim.path] = trial.suggest_int(
                dim.path, int(dim.low), int(dim.high), step=int(dim.step or 1), log=dim.log
            )
        else:
            params[dim.path] = trial.suggest_float(
                dim.path, dim.low, dim.high, step=dim.step, log=dim.log
            )
    return params


@dataclass(frozen=True)
class Outcome:
    """How one trial ended."""

    number: int
    state: TrialState
    values: list[float] | None
    reason: str = ""


# group objective(handles) -> per trial, its metrics or the exception that ended it
GroupObjective = Callable[[Sequence[TrialHandle]], Sequence[Mapping[str, float] | Exception]]


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


# launch(handles) starts the trials (e.g. sends them to a trainer process) and returns
# what waits for them: per trial, its metrics or the exception that ended it
Launch = Callable[[Sequence[TrialHandle]], Callable[[], Sequence[Mapping[str, float] | Exception]]]


def run_trials(
    study: optuna.Study,
    space: Sequence[Dimension],
    objective: Objective,
    n_trials: int,
    timeout: float | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
    *,
    goals: Sequence[Goal] = DEFAULT_GOALS,
    constraints: Sequence[Constraint] = (),
    pruner: optuna.pruners.BasePruner | None = None,
    stop: Callable[[], bool] = lambda: False,
    fusion: Fusion | None = None,
    jobs: int = 1,
    launch: Launch | None = None,
) -> list[Outcome]:
    """Run trials until the study holds ``n_trials`` finished ones, ``timeout`` passes or
    ``stop()`` says so. Several processes may run this on one study: together they finish
    ``n_trials`` (the first ``n_trials`` trials by number that did not fail win; a trial a
    dead worker left is failed after the heartbeat grace period and retried once).

    With ``fusion``, trials are asked in groups and trained together; each is still told
    and reported on its own. With ``jobs`` > 1, that many trials (or groups) are asked,
    told and waited for at the same time by threads of this process.

    With ``launch``, trials are started by it (``objective`` and ``fusion.objective`` are
    not called; a group of ``fusion.size`` is still asked at once), and each thread starts
    its next trials before it waits for the previous ones: the trainer goes from one to
    the next while this process tells and logs the first. They are asked without the
    results of the trials still running, as in any parallel search.

    Each call makes at most as many attempts as trials were missing when it began (plus
    retries), so a failing objective cannot loop forever; a failure stays inside its trial.
    Ctrl-C marks the running trials failed and propagates.
    """
    loop = _TrialLoop(
        study,
        space,
        launch or _in_place(objective, fusion),
        n_trials,
        timeout,
        on_outcome,
        goals,
        constraints,
        pruner,
        stop,
        fusion,
        depth=2 if launch is not None else 1,
        lanes=jobs,
    )
    if jobs == 1:
        loop.run()
        return loop.outcomes
    threads = [threading.Thread(target=loop.run_in_thread, daemon=True) for _ in range(jobs)]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(0.1)  # short waits, so that Ctrl-C reaches this thread
    except KeyboardInterrupt:
        loop.interrupted.set()  # each thread fails its running trial at the next epoch
        for thread in threads:
            thread.join()
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
        space: Sequence[Dimension],
        launch: Launch,
        n_trials: int,
        timeout: float | None,
        on_outcome: Callable[[Outcome], None] | None,
        goals: Sequence[Goal],
        constraints: Sequence[Constraint],
        pruner: optuna.pruners.BasePruner | None,
        stop: Callable[[], bool],
        fusion: Fusion | None,
        depth: int,
        lanes: int,
    ) -> None:
        self.study, self.space, self.launch = study, space, launch
        self.n_trials, self.timeout, self.on_outcome = n_trials, timeout, on_outcome
        self.goals, self.constraints, self.pruner = goals, constraints, pruner
        self.stop, self.fusion = stop, fusion
        self.depth = depth  # trials (or groups) a thread may have started at a time
        self.lanes = lanes  # threads sharing this loop
        self.started = time.monotonic()
        self.stale_seen = -math.inf  # when stale trials were last looked for
        self.attempts = max(0, n_trials - finished_trials(study))
        self.outcomes: list[Outcome] = []
        self.errors: list[BaseException] = []
        self.interrupted = threading.Event()
        self.lock = threading.Lock()

    def run_in_thread(self) -> None:
        """:meth:`run`, keeping what ends the thread for the caller to re-raise."""
        try:
            self.run()
        except BaseException as exc:  # handed to the main thread, which re-raises it
            self.errors.append(exc)
            self.interrupted.set()

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
        return self.depth if self.attempts > self.lanes else 1

    def _going(self) -> bool:
        return not self.stop() and not self.interrupted.is_set()

    def _start(self, handles: list[TrialHandle]) -> _Started:
        beating = ExitStack()  # Optuna's heartbeats: other workers see when this one dies
        for handle in handles:
            beating.enter_context(get_heartbeat_thread(handle.trial._trial_id, self.study._storage))
        try:
            return _Started(handles, beating, self.launch(handles))
        except BaseException as exc:
            with beating:
                _fail(self.study, handles, f"not started: {type(exc).__name__}: {exc}")
            raise

    def _finish(self, started: _Started) -> None:
        """Wait for the trials and tell Optuna each outcome."""
        with started.beating:
            try:
                results = started.wait()
            except KeyboardInterrupt:
                _fail(self.study, started.handles, "interrupted")
                raise
            outcomes = []
            for handle, result in zip(started.handles, results, strict=True):
                handle.save()
                outcomes.append(
                    _tell(self.study, handle.trial, result, self.goals, self.constraints)
                )
        with self.lock:
            for outcome in outcomes:
                self.outcomes.append(outcome)
                if self.on_outcome is not None:
                    self.on_outcome(outcome)

    def _next(self) -> list[TrialHandle] | None:
        """The next trials to train, ``[]`` to wait for other workers, ``None`` when done."""
        if self.attempts <= 0:
            return None
        if self.timeout is not None and time.monotonic() - self.started >= self.timeout:
            return None
        study = self.study
        # A dead worker's trial goes stale after the grace period: looking once per
        # heartbeat interval finds it in time, without a query per ask.
        now = time.monotonic()
        if is_heartbeat_enabled(study._storage) and now - self.stale_seen >= HEARTBEAT_INTERVAL_S:
            with _quiet():
                optuna.storages.fail_stale_trials(study)
            self.stale_seen = now
        counts = _counts(study)
        if counts["finished"] >= self.n_trials:
            return None
        free = self.n_trials - counts["finished"] - counts["running"]
        if free <= 0 and not counts["waiting"]:
            return []
        fusion = self.fusion
        size = min(fusion.size, self.attempts, max(free, 1)) if fusion else 1
        handles = _ask_group(study, self.space, size, fusion.shared if fusion else (), self.pruner)
        live = []
        for handle in handles:
            if _surplus(study, handle.number, self.n_trials):
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
    study: optuna.Study,
    space: Sequence[Dimension],
    size: int,
    shared: Sequence[str],
    pruner: optuna.pruners.BasePruner | None,
) -> list[TrialHandle]:
    """``size`` new trials; after the first, the sampler keeps the ``shared`` params fixed
    to the first trial's values."""
    pruner = pruner or optuna.pruners.NopPruner()
    with _quiet():
        first = study.ask()
    handles = [TrialHandle(first, suggest(first, space), pruner)]
    if size > 1:
        fixed = {path: handles[0].params[path] for path in shared if path in handles[0].params}
        with _quiet():
            # The same study seen through a sampler that keeps the shared params fixed.
            followers = optuna.Study(
                study_name=study.study_name,
                storage=study._storage,
                sampler=optuna.samplers.PartialFixedSampler(fixed, study.sampler),
            )
            for _ in range(size - 1):
                trial = followers.ask()
                handles.append(TrialHandle(trial, suggest(trial, space), pruner))
    return handles


def _fail(study: optuna.Study, handles: Sequence[TrialHandle], reason: str) -> None:
    for handle in handles:
        handle.save()
        handle.trial.set_user_attr("fail_reason", reason)
        study.tell(handle.trial, state=TrialState.FAIL)


def _guarded(objective: Objective, handle: TrialHandle) -> Mapping[str, float] | Exception:
    try:
        return objective(handle)
    except Exception as exc:
        return exc


def _tell(
    study: optuna.Study,
    trial: optuna.Trial,
    result: Mapping[str, float] | Exception,
    goals: Sequence[Goal],
    constraints: Sequence[Constraint],
) -> Outcome:
    """Tell Optuna how the trial ended: complete with its goal values, pruned or failed."""
    if isinstance(result, optuna.TrialPruned):
        trial.set_user_attr("prune_reason", str(result))
        study.tell(trial, state=TrialState.PRUNED)
        return Outcome(trial.number, TrialState.PRUNED, None, str(result))
    try:
        if isinstance(result, Exception):
            raise result
        values = [result[goal.metric] for goal in goals]
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        trial.set_user_attr("fail_reason", reason)
        study.tell(trial, state=TrialState.FAIL)
        return Outcome(trial.number, TrialState.FAIL, None, reason)
    for constraint in constraints:
        trial.set_constraint(str(constraint), constraint.violation(result))
    study.tell(trial, values)
    shown = ", ".join(f"{g.metric} {v:.4g}" for g, v in zip(goals, values, strict=True))
    return Outcome(trial.number, TrialState.COMPLETE, values, shown)


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence Optuna's notes on heartbeats outside ``optimize`` (kdsweep beats itself)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used")
        yield


def _counts(study: optuna.Study) -> dict[str, int]:
    trials = study.get_trials(deepcopy=False)
    return {
        "finished": sum(t.state in FINISHED for t in trials),
        "running": sum(t.state == TrialState.RUNNING for t in trials),
        "waiting": sum(t.state == TrialState.WAITING for t in trials),
    }


def _surplus(study: optuna.Study, number: int, n_trials: int) -> bool:
    """Whether ``n_trials`` trials that did not fail precede trial ``number``."""
    if number < n_trials:
        return False  # fewer than n_trials trials of any state precede it
    alive = (*FINISHED, TrialState.RUNNING)
    earlier = [t for t in study.get_trials(deepcopy=False, states=alive) if t.number < number]
    return len(earlier) >= n_trials


def make_storage(url: str) -> optuna.storages.BaseStorage | str:
    """A relational storage with heartbeats: a trial whose worker stops beating for
    ``GRACE_PERIOD_S`` is failed and retried once with the same parameters."""
    if not url.startswith(("sqlite", "postgresql", "mysql")):
        return url
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=HEARTBEAT_INTERVAL_S,
            grace_period=GRACE_PERIOD_S,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=1
            ),
        )


def retried_trial(trial: optuna.Trial) -> int | None:
    """The number of the trial this one retries, if it is a retry."""
    frozen = trial.storage.get_trial(trial._trial_id)
    with _quiet():
        return optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(frozen)
