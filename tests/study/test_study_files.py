"""Every study file shipped under studies/ is valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdsweep.study.load import load_study

STUDIES = sorted((Path(__file__).resolve().parents[2] / "studies").glob("*.toml"))


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_study_file_is_valid(path: Path) -> None:
    study = load_study(path)
    assert study.settings.name
    assert study.settings.n_trials >= 1


def test_crd_pair_matches_the_paper() -> None:
    study = load_study(next(p for p in STUDIES if p.stem == "cifar100-resnet32x4-resnet8x4"))
    base = study.resolve()
    assert (base.teacher.model, base.student.model) == ("resnet32x4", "resnet8x4")
    assert base.train.epochs == base.teacher_train.epochs == 240
    assert base.schedules["lr"].params["milestones"] == "150,180,210"
    assert base.dataset.name == "cifar100"
