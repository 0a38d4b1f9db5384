"""Means over seeds and their 95% t-intervals, against tabulated Student t quantiles."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation.reporting.bands import band, decimals_for, interval

# t_{0.975, df} from a printed table.
T975 = {1: 12.7062, 2: 4.3027, 4: 2.7764, 9: 2.2622}


@pytest.mark.parametrize("n", [2, 3, 5, 10])
def test_interval_is_the_t_interval_of_the_mean(n: int) -> None:
    samples = np.random.default_rng(n).normal(3.0, 2.0, size=n)
    result = interval(samples)
    std = math.sqrt(sum((s - samples.mean()) ** 2 for s in samples) / (n - 1))
    assert result.n == n
    assert result.mean == pytest.approx(float(np.mean(samples)))
    assert result.half_width == pytest.approx(T975[n - 1] * std / math.sqrt(n), rel=1e-4)


def test_one_seed_has_a_mean_but_no_interval() -> None:
    result = interval(np.array([4.0, math.nan]))
    assert (result.mean, result.n) == (4.0, 1) and math.isnan(result.half_width)
    assert result.format() == "4.000"
    assert interval(np.array([math.nan])).format() == "n/a"


def test_band_per_batch_leaves_out_missing_seeds() -> None:
    values = np.array([[0.0, 1.0, math.nan], [2.0, 3.0, 5.0]])
    result = band(values)
    assert result.mean.tolist()[:2] == [1.0, 2.0] and result.mean[2] == 5.0
    # Two seeds: half-width t_{0.975,1} * sd / sqrt(2), sd = sqrt(2).
    assert result.high[0] - result.mean[0] == pytest.approx(T975[1], rel=1e-4)
    assert result.n_seeds.tolist() == [2.0, 2.0, 1.0]
    assert math.isnan(result.low[2]) and math.isnan(result.high[2])


def test_a_batch_without_any_value_has_no_mean() -> None:
    result = band(np.array([[math.nan, 1.0], [math.nan, 1.0]]))
    assert math.isnan(result.mean[0]) and result.mean[1] == 1.0 and result.high[1] == 1.0


@pytest.mark.parametrize(("value", "digits"), [(0.5, 3), (-9.99, 3), (42.0, 2), (1619.2, 1), (-250.0, 1)])
def test_decimals_keep_about_four_significant_digits(value: float, digits: int) -> None:
    assert decimals_for(value) == digits
    assert interval(np.array([1619.23, 1619.23])).format() == "1619.2 ± 0.0"
