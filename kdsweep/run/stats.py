"""Repeated runs compared with the baseline: mean, standard deviation, Welch's t-test."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (NaN for fewer than two values)."""
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else math.nan


def welch(kd: Sequence[float], baseline: Sequence[float]) -> dict[str, float]:
    """Mean ± std of both samples, the mean gain, and Welch's unequal-variance t-test."""
    from scipy import stats

    kd_mean, kd_std = mean_std(kd)
    base_mean, base_std = mean_std(baseline)
    if len(kd) > 1 and len(baseline) > 1 and (kd_std > 0 or base_std > 0):
        result = stats.ttest_ind(kd, baseline, equal_var=False)
        t, p = float(result.statistic), float(result.pvalue)
    else:
        t = p = math.nan
    return {
        "kd_mean": kd_mean,
        "kd_std": kd_std,
        "baseline_mean": base_mean,
        "baseline_std": base_std,
        "gain": kd_mean - base_mean,
        "t": t,
        "p": p,
    }
