from __future__ import annotations

import pytest
from kdsweep_builtins.schedules import constant, exponential, linear


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
