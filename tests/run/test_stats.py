from __future__ import annotations

import math
import statistics

import pytest

from kdsweep.run.stats import mean_std, welch


def test_welch_matches_the_formula() -> None:
    kd, base = [0.91, 0.93, 0.94, 0.92], [0.80, 0.83, 0.81]
    m1, m2 = statistics.fmean(kd), statistics.fmean(base)
    v1, v2 = statistics.variance(kd), statistics.variance(base)
    t = (m1 - m2) / math.sqrt(v1 / len(kd) + v2 / len(base))
    result = welch(kd, base)
    assert result["t"] == pytest.approx(t)
    assert result["gain"] == pytest.approx(m1 - m2)
    assert result["kd_std"] == pytest.approx(math.sqrt(v1))
    assert 0 < result["p"] < 0.01  # a clear difference


def test_welch_without_a_difference_is_not_significant() -> None:
    result = welch([0.9, 0.8, 0.85], [0.85, 0.9, 0.8])
    assert result["p"] > 0.5 and result["gain"] == pytest.approx(0.0)


def test_too_few_values_give_nan() -> None:
    assert math.isnan(mean_std([0.5])[1])
    assert math.isnan(welch([0.9], [0.8])["p"])
