"""Everything decided before any training, in one place: the study file's checks (done by
:mod:`kdsweep.study`), then what needs the layers below (the sampler's and pruner's
options need Optuna, the models need PyTorch and the data), the command line's values
and where the results go. :func:`prepare` returns one frozen :class:`Plan`; nothing
after it validates again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import optuna
import torch

from kdsweep.errors import ConfigError
from kdsweep.run.locations import RunOptions, StudyLocations
from kdsweep.search.loop import LoopSettings
from kdsweep.search.pruners import make_pruner
from kdsweep.search.samplers import make_sampler, stream_seed
from kdsweep.study.schema import count_or_auto
from kdsweep.study.space import WIDTH
from kdsweep.study.study import Study
from kdsweep.train.cache import ModelCache
from kdsweep.train.checks import can_fuse, check_models, needs_teacher
from kdsweep.train.device import pick_device
from kdsweep.train.fused import SHARED_TRAIN_SETTINGS
from kdsweep.train.grouped import groupable
from kdsweep.train.trainer import StudyTrainer

# Group size of fuse = "auto": on a GPU a fused group fills the device that one small
# student leaves idle. On the CPU, students that are plain stacks of layers train as one
# grouped network, 1.2x to 5x faster per step than one by one (bench/cpu_grouped_step.py),
# which made a sweep without pruning 15% faster; with a pruner it was 7% slower (a group
# of 8 is asked before the pruner sees their curves, so fewer are pruned), and other
# students would run vmap's batched kernels, no faster there: those train alone
# (docs/performance.md).
AUTO_FUSE = 8


@dataclass(frozen=True)
class Plan:
    """A study ready to run: every check passed, every choice resolved.

    :param trainer: the prepared trainer (data on the device, models checked).
    :param loop: what the search asks and until when (its fusion objective is added by
        the run, which owns the trials' MLflow runs).
    """

    study: Study
    locations: StudyLocations
    trainer: StudyTrainer
    sampler: optuna.samplers.BaseSampler
    loop: LoopSettings
    fuse: int  # trials trained together as one model
    needs_teacher: bool
    workers: int
    graceful: bool

    @property
    def device(self) -> torch.device:
        """Where training happens."""
        return self.trainer.device


def prepare(study: Study, options: RunOptions) -> Plan:
    """Check everything that can fail before training and resolve every choice."""
    settings = study.settings
    locations = StudyLocations.of(study, options)
    _check_counts(options)
    if options.workers > 1 and locations.storage.startswith("sqlite"):
        raise ConfigError(
            f"{study.path}: --workers {options.workers} needs a database server that "
            "several processes can share (--storage postgresql://...); SQLite serialises them"
        )
    sampler = make_sampler(settings, study.search, study.path)
    pruner = make_pruner(settings, study.path)
    fuse_wanted = _fuse_wanted(study)
    jobs_wanted = _jobs_wanted(study, options)
    device = _device(options.device or settings.device)
    trainer = StudyTrainer(study, device, ModelCache(locations.cache))
    check_models(study, trainer.models)
    loop = LoopSettings(
        sampler_for=lambda first: make_sampler(
            replace(settings, seed=stream_seed(settings.seed, first)), study.search, study.path
        ),
        space=study.search,
        n_trials=settings.n_trials if options.n_trials is None else options.n_trials,
        timeout=options.timeout or settings.timeout,
        goals=settings.objectives,
        constraints=settings.constraints,
        pruner=pruner,
        jobs=_job_count(jobs_wanted, device),
    )
    return Plan(
        study=study,
        locations=locations,
        trainer=trainer,
        sampler=sampler,
        loop=loop,
        fuse=_auto_fuse(trainer) if fuse_wanted == "auto" else fuse_wanted,
        needs_teacher=needs_teacher(study),
        workers=options.workers,
        graceful=options.graceful,
    )


def shared_paths(study: Study, mixed_widths: bool = False) -> tuple[str, ...]:
    """Searched paths every member of a fused group shares with the group's first trial;
    with ``mixed_widths`` the student's width is not among them (on the CPU a group's
    members of each width train together, so a group need not fix one width for all)."""
    shared = {"loss.name", *(f"train.{name}" for name in SHARED_TRAIN_SETTINGS)}
    return tuple(
        dim.path
        for dim in study.search
        if (dim.path in shared or dim.path.startswith("student."))
        and not (mixed_widths and dim.path == WIDTH)
    )


def _auto_fuse(trainer: StudyTrainer) -> int:
    """``fuse = "auto"``: :data:`AUTO_FUSE` on a GPU, and on the CPU for studies without
    a pruner whose students train as one grouped network there; else 1."""
    if trainer.device.type == "cuda":
        return AUTO_FUSE
    if trainer.device.type != "cpu" or trainer.study.settings.pruner != "none":
        return 1
    student = trainer.models.build("student", trainer.base.student, "[student]")
    return AUTO_FUSE if groupable(student) else 1


def _check_counts(options: RunOptions) -> None:
    if options.n_trials is not None and options.n_trials < 0:  # 0: teacher and baselines only
        raise ConfigError(f"--n-trials {options.n_trials}: must be >= 0")
    if options.timeout is not None and options.timeout <= 0:
        raise ConfigError(f"--timeout {options.timeout}: must be > 0")
    if options.workers < 1:
        raise ConfigError(f"--workers {options.workers}: must be >= 1")


def _fuse_wanted(study: Study) -> int | str:
    """``[study] fuse`` checked against what the study does (``auto`` falls back to 1
    where fusing cannot apply; a number gives an error)."""
    wanted = study.settings.fuse
    if wanted == 1:
        return 1
    reason = None
    if not can_fuse(study):
        reason = (
            "fused trials need response-based losses (no layers read, no loss modules, "
            "no mutual learning or generations)"
        )
    elif study.settings.sampler == "grid":
        reason = "the grid sampler fixes every param of each trial, so it cannot fill a group"
    if reason is None:
        return wanted
    if wanted == "auto":
        return 1
    raise ConfigError(f"{study.path}: [study] fuse = {wanted}: {reason}")


def _jobs_wanted(study: Study, options: RunOptions) -> int | str:
    """``--jobs`` over ``[study] jobs``, checked."""
    if options.jobs is None:
        return study.settings.jobs
    wanted: int | str = int(options.jobs) if options.jobs.isdigit() else options.jobs
    problem = count_or_auto(wanted)
    if problem is not None:
        raise ConfigError(f"--jobs {options.jobs}: {problem}")
    return wanted


def _job_count(wanted: int | str, device: torch.device) -> int:
    """``auto`` is one per CPU core on the CPU (tiny models use one core each best) and 1
    on a GPU."""
    if wanted != "auto":
        return int(wanted)
    return len(os.sched_getaffinity(0)) if device.type == "cpu" else 1


def _device(name: str) -> torch.device:
    try:
        device = pick_device(name)
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as exc:
        raise ConfigError(f"device '{name}' cannot be used here: {exc}") from None
    return device
