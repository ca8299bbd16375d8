"""How to test a kdsweep plugin: installed, it is found like any other (pip install -e .)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kdsweep.cli import main
from kdsweep.plugin import LossBatch
from kdsweep.plugin.manager import load_registry

HERE = Path(__file__).resolve().parent.parent


def test_plugin_registers_its_components() -> None:
    registry = load_registry()
    student = registry.get("student", "dwsep")
    loss = registry.get("loss", "logit_mse")
    assert student.origin.distribution == "kdsweep-example-plugin"
    assert loss.params == {"alpha": 0.5}


def test_student_builds_at_every_width() -> None:
    build = load_registry().get("student", "dwsep").load()
    for width in (1, 4, 16):
        logits = build(width, 10, (1, 8, 8))(torch.zeros(2, 1, 8, 8))
        assert logits.shape == (2, 10)
    with pytest.raises(ValueError, match="width"):
        build(2.5, 10, (1, 8, 8))


def test_loss_is_zero_matching_term_when_logits_agree() -> None:
    loss = load_registry().get("loss", "logit_mse").load()
    logits = torch.tensor([[5.0, -5.0]])
    batch = LossBatch(student_logits=logits, targets=torch.tensor([0]), teacher_logits=logits)
    assert loss(batch, alpha=1.0).item() == 0.0


def test_study_runs_end_to_end(tmp_path) -> None:
    assert main(["run", str(HERE / "study.toml"), "--results", str(tmp_path)]) == 0
    assert (tmp_path / "mlflow.db").is_file()
