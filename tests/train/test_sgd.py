"""kdsweep's SGD updates parameters exactly as ``torch.optim.SGD(fused=True)`` does, and
training with it does not import ``torch._dynamo``."""

from __future__ import annotations

import itertools
import subprocess
import sys

import torch

from kdsweep.train.sgd import FusedSGD

SETTINGS = [
    {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4},
    {"lr": 0.1, "momentum": 0.5, "nesterov": False, "weight_decay": 0.0},
    {"lr": 0.2, "momentum": 0.0, "nesterov": False, "weight_decay": 1e-3},
]


def _params(seed: int) -> list[list[torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    shapes = [[(4, 3), (3,)], [(2, 2, 3, 3)], [(5,)]]
    return [
        [torch.randn(shape, generator=generator).requires_grad_() for shape in group]
        for group in shapes
    ]


def _train_both(reference_options: dict, late: int = -1) -> list[tuple[torch.Tensor, ...]]:
    """Six steps of ours and of torch.optim.SGD on equal params and gradients (the lr
    moves after three; parameter ``late`` has no gradient in the first two); each
    parameter's pair of final values."""
    ours, theirs = _params(0), _params(0)
    mine = FusedSGD([{"params": p, **s} for p, s in zip(ours, SETTINGS, strict=True)])
    reference = torch.optim.SGD(
        [{"params": p, **s} for p, s in zip(theirs, SETTINGS, strict=True)], **reference_options
    )
    pairs = list(zip(itertools.chain(*ours), itertools.chain(*theirs), strict=True))
    generator = torch.Generator().manual_seed(1)
    for step in range(6):
        for optimizer in (mine, reference):
            optimizer.zero_grad(set_to_none=True)
            if step == 3:  # the learning rate moves between steps, as schedules do
                optimizer.param_groups[0]["lr"] = 0.01
        for index, (a, b) in enumerate(pairs):
            if index != late or step >= 2:
                grad = torch.randn(a.shape, generator=generator)
                a.grad, b.grad = grad.clone(), grad.clone()
        mine.step()
        reference.step()
    return pairs


def test_updates_equal_torch_fused_sgd() -> None:
    for ours, theirs in _train_both({"fused": True}):
        assert torch.equal(ours, theirs)


def test_a_parameter_whose_gradient_comes_late_starts_its_momentum_then() -> None:
    """(torch's fused SGD fails on such a parameter; its per-tensor SGD is the reference.)"""
    for ours, theirs in _train_both({"foreach": False}, late=0):
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)


def test_zero_grad_drops_or_zeroes_the_gradients() -> None:
    (weights,) = _params(0)[:1]
    optimizer = FusedSGD([{"params": weights, **SETTINGS[0]}])
    for weight in weights:
        weight.grad = torch.ones_like(weight)
    optimizer.zero_grad(set_to_none=False)
    assert all(torch.count_nonzero(w.grad) == 0 for w in weights)
    optimizer.zero_grad()
    assert all(w.grad is None for w in weights)


def test_training_does_not_import_dynamo() -> None:
    """Importing torch._dynamo costs seconds in each process; training needs none of it."""
    script = """
import sys
from kdsweep_builtins.datasets import load_digits
from kdsweep_builtins.losses import cross_entropy_loss
from kdsweep_builtins.models import build_cnn
from kdsweep.study.settings import TrainSettings
from kdsweep.train import fit
model = build_cnn(4, 10, (1, 8, 8))
recipe = fit.Recipe(TrainSettings(epochs=1, batch_size=64), fit.TrainingLoss.of(cross_entropy_loss))
fit.fit(model, load_digits(), recipe)
print("torch._dynamo" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
