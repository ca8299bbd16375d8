"""Trainer processes: with ``jobs`` > 1, trials train in child processes, one per job.

Threads would serialise the Python side of every training step on the interpreter lock;
processes do not. The parent keeps Optuna and MLflow to itself (one writer per store):
a child only trains. After each epoch it sends the report to the parent and waits for the
verdict: go on, or stop with the exception the parent's callback raised (pruning, Ctrl-C).
At the end it sends each trial's :class:`~kdsweep.engine.FitResult` or exception.

A child is forked from the prepared parent when that is safe (CPU, one thread per child):
it then starts at once with the parent's data and teachers. Otherwise it is spawned and
loads the study again.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import pickle
import signal
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kdsweep.engine import EpochCallback, EpochReport, FitResult
from kdsweep.settings import TrialSettings

Outcome = FitResult | Exception


@dataclass(frozen=True)
class TrainerSpec:
    """What a spawned child needs to rebuild the experiment."""

    study_path: str
    plugins: tuple[str, ...]
    device: str
    cache: str
    threads: int  # torch intra-op threads in the child


class TrainerDied(RuntimeError):
    """A trainer process ended while training (killed, out of memory, crashed)."""


class Trainer:
    """One child process, used by one thread of the parent at a time."""

    def __init__(self, spec: TrainerSpec, experiment: Any | None) -> None:
        forked = experiment is not None
        context = multiprocessing.get_context("fork" if forked else "spawn")
        self.connection, child_end = context.Pipe()
        self.process = context.Process(
            target=_child_main,
            args=(child_end, spec, experiment if forked else None),
            daemon=True,
            name="kdsweep-trainer",
        )
        self.process.start()
        child_end.close()

    def run_trial(self, settings: TrialSettings, on_epoch: EpochCallback | None) -> FitResult:
        """Like :meth:`Experiment.run_trial`, in the child."""
        (outcome,) = self._run("trial", [settings], [on_epoch])
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def run_group(
        self, group: Sequence[TrialSettings], on_epochs: Sequence[EpochCallback | None]
    ) -> list[Outcome]:
        """Like :meth:`Experiment.run_group`, in the child."""
        return self._run("group", list(group), list(on_epochs))

    def close(self) -> None:
        """Ask the child to end; stop it if it does not."""
        with contextlib.suppress(OSError):
            self.connection.send(None)
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()

    def _run(
        self, kind: str, settings: list[TrialSettings], callbacks: list[EpochCallback | None]
    ) -> list[Outcome]:
        self.connection.send((kind, settings))
        interrupted: BaseException | None = None
        while True:
            message = self._receive()
            if message[0] == "done":
                if interrupted is not None:
                    raise interrupted
                return message[1]
            _, member, report = message
            verdict: BaseException | None = None
            callback = callbacks[member]
            try:
                if callback is not None:
                    callback(report)
            except KeyboardInterrupt as exc:
                verdict = interrupted = exc
            except Exception as exc:
                verdict = exc
            self.connection.send(_picklable(verdict))

    def _receive(self) -> Any:
        try:
            return self.connection.recv()
        except (EOFError, OSError):
            self.process.join(timeout=5)
            raise TrainerDied(
                f"trainer process {self.process.pid} ended while training "
                f"(exit code {self.process.exitcode})"
            ) from None


class TrainerPool:
    """``jobs`` trainers, started at once (so that forks happen before the search's threads
    exist); each thread of the parent takes one on first use. A trainer that died is
    replaced by a spawned one."""

    def __init__(self, spec: TrainerSpec, jobs: int, experiment: Any | None) -> None:
        self._spec = spec
        self._free = [Trainer(spec, experiment) for _ in range(jobs)]
        self._all = list(self._free)
        self._mine = threading.local()
        self._lock = threading.Lock()

    def current(self) -> Trainer:
        """The calling thread's trainer."""
        trainer = getattr(self._mine, "trainer", None)
        if trainer is None or not trainer.process.is_alive():
            with self._lock:
                if trainer is None and self._free:
                    trainer = self._free.pop()
                else:
                    trainer = Trainer(self._spec, None)
                    self._all.append(trainer)
            self._mine.trainer = trainer
        return trainer

    def run_trial(self, settings: TrialSettings, on_epoch: EpochCallback | None) -> FitResult:
        """The calling thread's trainer runs the trial."""
        return self.current().run_trial(settings, on_epoch)

    def run_group(
        self, group: Sequence[TrialSettings], on_epochs: Sequence[EpochCallback | None]
    ) -> list[Outcome]:
        """The calling thread's trainer runs the fused group."""
        return self.current().run_group(group, on_epochs)

    def close(self) -> None:
        """End every trainer."""
        with self._lock:
            trainers, self._all, self._free = self._all, [], []
        for trainer in trainers:
            trainer.close()


def fork_is_safe(device: torch.device, threads: int) -> bool:
    """Forking a prepared parent is safe on the CPU with one thread per child (the OpenMP
    pool and CUDA do not survive a fork)."""
    return device.type == "cpu" and threads == 1


def _child_main(connection: Any, spec: TrainerSpec, experiment: Any | None) -> None:
    """The child's loop: train what the parent sends until it sends ``None``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what Ctrl-C stops
    torch.set_num_threads(spec.threads)
    if experiment is None:
        experiment = _rebuild(spec)
    while True:
        try:
            request = connection.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if request is None:
            return
        kind, settings = request
        callbacks = [_relay(connection, member) for member in range(len(settings))]
        try:
            if kind == "trial":
                outcomes: list[Outcome] = [experiment.run_trial(settings[0], callbacks[0])]
            else:
                outcomes = experiment.run_group(settings, callbacks)
        except KeyboardInterrupt as exc:
            outcomes = [RuntimeError(f"interrupted: {exc}")] * len(settings)
        except Exception as exc:
            outcomes = [exc] * len(settings)
        connection.send(("done", [_picklable(outcome) for outcome in outcomes]))


def _relay(connection: Any, member: int) -> EpochCallback:
    """An epoch callback that asks the parent, and raises what the parent's one raised."""

    def on_epoch(report: EpochReport) -> None:
        connection.send(("epoch", member, report))
        verdict = connection.recv()
        if verdict is not None:
            raise verdict

    return on_epoch


def _rebuild(spec: TrainerSpec) -> Any:
    from kdsweep.cache import ModelCache
    from kdsweep.cli import load
    from kdsweep.experiment import Experiment

    study = load(spec.study_path, spec.plugins)
    return Experiment(study, torch.device(spec.device), ModelCache(Path(spec.cache)))


def _picklable(value: Any) -> Any:
    """``value``, or for an exception that cannot cross the pipe, a RuntimeError naming it."""
    if not isinstance(value, BaseException):
        return value
    try:
        pickle.dumps(value)
    except Exception:
        return RuntimeError(f"{type(value).__name__}: {value}")
    return value
