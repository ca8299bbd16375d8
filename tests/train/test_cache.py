"""A cache entry that cannot be used is named in one warning, moved aside and rebuilt."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kdsweep.study.load import load_study
from kdsweep.train.cache import ModelCache
from kdsweep.train.trainer import StudyTrainer


def _entry(tmp_path: Path) -> tuple[ModelCache, Path]:
    cache = ModelCache(tmp_path / "cache")
    cache.store("teachers", "abc", {"metrics": {"val_accuracy": 0.5}}, {"w": torch.ones(2)})
    return cache, tmp_path / "cache" / "teachers" / "abc.pt"


class Foreign:  # a pickle that weights_only loading refuses
    pass


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # the foreign pickle's
@pytest.mark.parametrize("damage", ["truncated", "broken-json", "foreign-pickle", "not-a-dict"])
def test_an_unreadable_entry_is_moved_aside_with_one_warning(tmp_path, capsys, damage) -> None:
    cache, weights = _entry(tmp_path)
    if damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:40])
    elif damage == "broken-json":
        weights.with_suffix(".json").write_text("{ not json")
    elif damage == "foreign-pickle":
        weights.write_bytes(pickle.dumps(Foreign()))
    else:
        torch.save([1, 2, 3], weights)
    assert cache.load("teachers", "abc") is None
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"kdsweep: warning: {weights}: unusable cache entry (")
    assert not weights.exists() and list(weights.parent.glob("abc.pt.corrupt-*"))
    cache.store("teachers", "abc", {"metrics": {"val_accuracy": 0.5}}, {"w": torch.ones(2)})
    assert cache.load("teachers", "abc") is not None  # rebuilt in its place


def test_a_corrupt_teacher_is_retrained_by_the_rerun(write_study, tmp_path) -> None:
    path, results = write_study(n_trials=1, search=""), tmp_path / "r"
    command = [sys.executable, "-m", "kdsweep", "run", str(path), "--results", str(results)]
    assert subprocess.run(command, capture_output=True, check=False).returncode == 0
    (teacher,) = (results / "cache" / "teachers").glob("*.pt")
    teacher.write_bytes(teacher.read_bytes()[:100])
    again = subprocess.run(
        [*command, "--n-trials", "2"], capture_output=True, text=True, check=False
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"kdsweep: warning: {teacher}: unusable cache entry" in again.stderr
    assert "Traceback" not in again.stderr
    assert torch.load(teacher, weights_only=True)  # trained again and stored


def test_a_teacher_trained_here_gives_the_logits_of_one_loaded_from_the_cache(
    write_study, tmp_path
) -> None:
    """Trials in the process that trained the teacher and in one that loaded it see the
    same teacher logits, to the last bit (a wide teacher trains in channels_last)."""
    path = write_study(n_trials=1, teacher={"width": 32, "epochs": 1})
    study = load_study(path)
    cache = ModelCache(tmp_path / "cache")
    settings = study.resolve()
    trained, loaded = (StudyTrainer(study, torch.device("cpu"), cache) for _ in range(2))
    assert not trained.teacher().cached and loaded.teacher().cached
    (here,), (there,) = (
        trained.teacher_signal(settings).logits,
        loaded.teacher_signal(settings).logits,
    )
    assert torch.equal(here, there)
