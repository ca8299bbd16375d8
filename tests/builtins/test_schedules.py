from __future__ import annotations

import math

import pytest
from kdsweep_builtins.schedules import (
    constant,
    cosine,
    exponential,
    linear,
    multistep,
    onecycle,
    step,
)


def test_constant_keeps_the_value() -> None:
    assert [constant(4.0, e, 5) for e in range(5)] == [4.0] * 5


def test_linear_decays_from_base_to_floor() -> None:
    values = [linear(9.0, e, 5, floor=1.0) for e in range(5)]
    assert values == pytest.approx([9.0, 7.0, 5.0, 3.0, 1.0])


def test_exponential_decays_geometrically_to_floor() -> None:
    values = [exponential(16.0, e, 5, floor=1.0) for e in range(5)]
    assert values == pytest.approx([16.0, 8.0, 4.0, 2.0, 1.0])


def test_single_epoch_uses_the_floor() -> None:
    assert linear(9.0, 0, 1, floor=2.0) == 2.0


def test_exponential_rejects_non_positive_values() -> None:
    with pytest.raises(ValueError, match="> 0"):
        exponential(4.0, 0, 3, floor=0.0)


def test_cosine_anneals_from_base_to_floor() -> None:
    values = [cosine(2.0, e, 5, floor=0.0) for e in range(5)]
    half = (1 + math.cos(math.pi / 4)) / 2
    assert values == pytest.approx([2.0, 2.0 * half, 1.0, 2.0 * (1 - half), 0.0])


def test_step_multiplies_by_gamma_every_step_size_epochs() -> None:
    values = [step(1.0, e, 7, gamma=0.5, step_size=3) for e in range(7)]
    assert values == pytest.approx([1, 1, 1, 0.5, 0.5, 0.5, 0.25])


def test_onecycle_rises_to_base_then_anneals_far_below() -> None:
    values = [onecycle(1.0, e, 11, pct_start=0.3) for e in range(11)]
    assert values[0] == pytest.approx(1.0 / 25)
    assert max(values) == pytest.approx(1.0)
    assert values.index(max(values)) == 3  # progress 0.3 is the peak
    assert values[-1] == pytest.approx(1.0 / (25 * 1e4))
    assert values[:4] == sorted(values[:4]) and values[3:] == sorted(values[3:], reverse=True)


def test_multistep_decays_at_each_milestone() -> None:
    values = [multistep(1.0, e, 8, milestones="2, 5", gamma=0.5) for e in range(8)]
    assert values == pytest.approx([1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25])
