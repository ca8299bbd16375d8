"""Trainer processes: with ``jobs`` > 1, trials train in child processes, one per job.

Threads would serialise the Python side of every training step on the interpreter lock;
processes do not. The parent keeps Optuna and MLflow to itself (one writer per store):
a child only trains. After each epoch it sends the report to the parent and trains on;
the parent answers only to stop a trial (pruning, Ctrl-C), and the child reads that
answer at the end of its next epoch. At the end it sends each trial's
:class:`~kdsweep.train.fit.FitResult` or exception.

Work is sent ahead: the parent may submit the next trial while one trains, so the child
starts it as soon as the first ends, while the parent logs and tells the first.

A child is forked from the prepared parent when that is safe (CPU, one thread per child):
it then starts at once with the parent's data and teachers. Otherwise it is spawned and
loads the study again.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from kdsweep.study.load import load_study
from kdsweep.study.settings import TrialSettings
from kdsweep.timeline import phase
from kdsweep.train.cache import ModelCache
from kdsweep.train.fit import EpochCallback, EpochReport, FitResult
from kdsweep.train.references import ModelRecord
from kdsweep.train.trainer import StudyTrainer

Outcome = FitResult | ModelRecord | Exception


@dataclass(frozen=True)
class TrainerSpec:
    """What a spawned child needs to load the study and prepare its trainer again."""

    study_path: str
    plugins: tuple[str, ...]
    device: str
    cache: str
    threads: int  # torch intra-op threads in the child


@dataclass(frozen=True)
class BaselineJob:
    """A no-distillation baseline for a trainer process to train (or load from the
    cache): the student at ``width`` trained with ``seed``."""

    width: float
    seed: int


Work = Sequence[TrialSettings] | BaselineJob


class TrainerDied(RuntimeError):
    """A trainer process ended while training (killed, out of memory, crashed)."""


@dataclass
class _Submitted:
    """A parent's view of work it sent: the callbacks of its members, the verdicts it sent
    back (member -> exception), and, once the child is done, the outcomes."""

    callbacks: list[EpochCallback | None]
    stopped: dict[int, BaseException] = field(default_factory=dict)
    interrupted: BaseException | None = None
    outcomes: list[Outcome] | None = None


class TrainerProcess:
    """One child process, used by one thread of the parent at a time."""

    def __init__(self, spec: TrainerSpec, trainer: StudyTrainer | None) -> None:
        forked = trainer is not None
        context = multiprocessing.get_context("fork" if forked else "spawn")
        self.connection, child_end = context.Pipe()
        self.process = context.Process(
            target=_child_main,
            args=(child_end, spec, trainer, os.getpid()),
            daemon=True,
            name="kdsweep-trainer",
        )
        self.process.start()
        child_end.close()
        self._tickets = itertools.count()
        self._submitted: dict[int, _Submitted] = {}

    def submit(self, work: Work, on_epochs: Sequence[EpochCallback | None]) -> int:
        """Send a trial (one settings), a fused group or a baseline to the child, which
        trains it after what it already has; returns the ticket to :meth:`wait` on."""
        ticket = next(self._tickets)
        submitted = self._submitted[ticket] = _Submitted(list(on_epochs))
        payload = work if isinstance(work, BaselineJob) else list(work)
        try:
            self.connection.send(("work", ticket, payload))
        except OSError:  # the child is gone: each member fails as it would while training
            submitted.outcomes = [self._died()] * len(on_epochs)
        return ticket

    def pending(self) -> bool:
        """Whether some submitted work has not come back yet."""
        return any(work.outcomes is None for work in self._submitted.values())

    def handle_ready(self) -> None:
        """Handle one message from the child (an epoch report or finished work); if the
        child died, all its pending work ends with :class:`TrainerDied`."""
        try:
            self._handle(self._receive())
        except TrainerDied as exc:
            for work in self._submitted.values():
                if work.outcomes is None:
                    work.outcomes = [exc] * len(work.callbacks)

    def wait(self, ticket: int) -> list[Outcome]:
        """Each member's result or the exception that ended it, calling the members'
        epoch callbacks (of this and other submitted work) as reports arrive. A member
        whose callback raised ends with that exception, even if the child finished it
        before reading the verdict; a KeyboardInterrupt is raised once the child stopped."""
        work = self._submitted[ticket]
        while work.outcomes is None:
            self._handle(self._receive())
        del self._submitted[ticket]
        if work.interrupted is not None:
            raise work.interrupted
        return [work.stopped.get(m, outcome) for m, outcome in enumerate(work.outcomes)]

    def close(self, now: bool = False) -> None:
        """Ask the child to end; stop it if it does not (at once with ``now``: the run is
        interrupted or failed, so what the child still trains is not wanted)."""
        with contextlib.suppress(OSError):
            self.connection.send(None)
        self.process.join(timeout=0 if now and self.pending() else 5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()

    def _handle(self, message: Any) -> None:
        if message[0] == "done":
            _, ticket, outcomes = message
            self._submitted[ticket].outcomes = outcomes
            return
        _, ticket, member, report = message
        work = self._submitted[ticket]
        callback = work.callbacks[member]
        if member in work.stopped or callback is None:
            return  # no callback, or a report the child sent before it read the verdict
        try:
            callback(report)
        except KeyboardInterrupt as exc:
            work.stopped[member] = work.interrupted = exc
        except Exception as exc:
            work.stopped[member] = exc
        else:
            return
        with contextlib.suppress(OSError):  # a dead child: the next receive says so
            self.connection.send(("stop", ticket, member, _picklable(work.stopped[member])))

    def _receive(self) -> Any:
        try:
            return self.connection.recv()
        except (EOFError, OSError):
            raise self._died() from None

    def _died(self) -> TrainerDied:
        self.process.join(timeout=5)
        return TrainerDied(
            f"trainer process {self.process.pid} ended while training "
            f"(exit code {self.process.exitcode})"
        )


class TrainerPool:
    """``jobs`` trainers, started at once (so that forks happen before the search's threads
    exist); each thread of the parent takes one on first use. A trainer that died is
    replaced by a spawned one."""

    def __init__(self, spec: TrainerSpec, jobs: int, trainer: StudyTrainer | None) -> None:
        self._spec = spec
        self._free = [TrainerProcess(spec, trainer) for _ in range(jobs)]
        self._all = list(self._free)
        self._jobs = jobs
        self._mine = threading.local()
        self._lock = threading.Lock()

    def started(self) -> list[TrainerProcess]:
        """The trainers started with the pool (work may be sent to them before any thread
        takes one)."""
        return list(self._all[: self._jobs])

    def current(self) -> TrainerProcess:
        """The calling thread's trainer."""
        trainer = getattr(self._mine, "trainer", None)
        if trainer is None or not trainer.process.is_alive():
            with self._lock:
                if trainer is None and self._free:
                    trainer = self._free.pop()
                else:
                    trainer = TrainerProcess(self._spec, None)
                    self._all.append(trainer)
            self._mine.trainer = trainer
        return trainer

    def close(self, now: bool = False) -> None:
        """End every trainer (``now``: without waiting for work in progress)."""
        with self._lock:
            trainers, self._all, self._free = self._all, [], []
        for trainer in trainers:
            trainer.close(now)


def wait_all(trainers: Sequence[TrainerProcess]) -> None:
    """Handle the trainers' messages as they come until all their submitted work is back
    (so no child waits on a full pipe while another is being waited for)."""
    while busy := [t for t in trainers if t.pending()]:
        ready = multiprocessing.connection.wait([t.connection for t in busy])
        for trainer in busy:
            if trainer.connection in ready:
                trainer.handle_ready()


def fork_is_safe(device: torch.device, threads: int) -> bool:
    """Forking a prepared parent is safe on the CPU with one thread per child (the OpenMP
    pool and CUDA do not survive a fork)."""
    return device.type == "cpu" and threads == 1


class _Inbox:
    """The child's end of the pipe. Work queues up while a trial trains; a verdict waits
    until the trial it names reads it at the end of an epoch."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.work: deque[Any] = deque()
        self.verdicts: dict[tuple[int, int], BaseException] = {}

    def next_work(self) -> Any:
        """The next submitted work, ``None`` when the parent is done (or gone)."""
        while not self.work:
            try:
                self._read()
            except (EOFError, OSError):
                return None
        return self.work.popleft()

    def verdict(self, ticket: int, member: int) -> BaseException | None:
        """What the parent said about a member so far, without waiting."""
        while self.connection.poll():
            self._read()
        return self.verdicts.pop((ticket, member), None)

    def forget_before(self, ticket: int) -> None:
        """Drop verdicts that reached finished work too late."""
        self.verdicts = {key: v for key, v in self.verdicts.items() if key[0] >= ticket}

    def _read(self) -> None:
        message = self.connection.recv()
        if message is not None and message[0] == "stop":
            _, ticket, member, verdict = message
            self.verdicts[(ticket, member)] = verdict
        else:
            self.work.append(message)


PARENT_CHECK_S = 0.5  # how often a trainer process looks whether its parent still lives


def _exit_with_parent(parent: int) -> None:
    """End this process once ``parent`` is gone (this process is then re-parented). A
    killed parent cannot say so, and the pipe gives no EOF while forked siblings hold
    its end; so the child looks for itself."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os._exit(1)


def _child_main(
    connection: Any, spec: TrainerSpec, trainer: StudyTrainer | None, parent: int
) -> None:
    """The child's loop: train what the parent sends until it sends ``None``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what Ctrl-C stops
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's (a fork inherits it)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    torch.set_num_threads(spec.threads)
    if trainer is None:
        trainer = _rebuild(spec)
    inbox = _Inbox(connection)
    while (work := inbox.next_work()) is not None:
        _, ticket, settings = work
        inbox.forget_before(ticket)
        members = 1 if isinstance(settings, BaselineJob) else len(settings)
        callbacks = [_relay(inbox, ticket, member) for member in range(members)]
        try:
            with phase("trainer busy"):
                outcomes = _train(trainer, settings, callbacks, _verdict_check(inbox, ticket, 0))
        except KeyboardInterrupt as exc:
            outcomes = [RuntimeError(f"interrupted: {exc}")] * members
        except Exception as exc:
            outcomes = [exc] * members
        connection.send(("done", ticket, [_picklable(outcome) for outcome in outcomes]))


def _train(
    trainer: StudyTrainer,
    work: Work,
    callbacks: Sequence[EpochCallback],
    poll: Callable[[], None],
) -> list[Outcome]:
    """Each member's outcome of one piece of work (``poll``: the first member's verdicts)."""
    if isinstance(work, BaselineJob):
        return [trainer.baseline(work.width, callbacks[0], work.seed)]
    if len(work) == 1:
        return [trainer.run_trial(work[0], callbacks[0], poll)]
    return trainer.run_group(work, callbacks)


def _relay(inbox: _Inbox, ticket: int, member: int) -> EpochCallback:
    """An epoch callback that reports to the parent, and raises the verdict the parent's
    callback sent back for an earlier epoch, if any."""
    check = _verdict_check(inbox, ticket, member)

    def on_epoch(report: EpochReport) -> None:
        inbox.connection.send(("epoch", ticket, member, report))
        check()

    return on_epoch


def _verdict_check(inbox: _Inbox, ticket: int, member: int) -> Callable[[], None]:
    """Raises the parent's verdict on a member if one arrived (cheap: a poll of the pipe);
    called after each step, a pruned trial stops within a step or two of the verdict."""

    def check() -> None:
        verdict = inbox.verdict(ticket, member)
        if verdict is not None:
            raise verdict

    return check


def _rebuild(spec: TrainerSpec) -> StudyTrainer:
    study = load_study(spec.study_path, spec.plugins)
    return StudyTrainer(study, torch.device(spec.device), ModelCache(Path(spec.cache)))


def _picklable(value: Any) -> Any:
    """``value``, or for an exception that cannot cross the pipe, a RuntimeError naming it."""
    if not isinstance(value, BaseException):
        return value
    try:
        pickle.dumps(value)
    except Exception:
        return RuntimeError(f"{type(value).__name__}: {value}")
    return value
