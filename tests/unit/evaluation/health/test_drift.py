"""The drift measurement's null of the rate alarms: observed over expected with Garwood's exact interval."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from evaluation.health.drift import first_alarm_delays, observed_over_expected


def test_observed_over_expected_pools_batches_with_an_exact_poisson_interval() -> None:
    y = np.array([[3.0, 5.0, math.nan], [0.0, 2.0, 4.0]])
    p = np.array([[4.0, 4.0, 4.0], [3.0, 2.0, 3.0]])
    r = observed_over_expected(y, p)
    assert r["observed"] == 14 and r["expected"] == 16  # the nan batch is left out on both sides
    assert r["ratio"] == pytest.approx(14 / 16)
    # Garwood: the Poisson means whose tail at 14 is 2.5% on either side
    assert scipy.stats.poisson.sf(13, r["lower"] * 16) == pytest.approx(0.025, rel=1e-6)
    assert scipy.stats.poisson.cdf(14, r["upper"] * 16) == pytest.approx(0.025, rel=1e-6)
    none = observed_over_expected(np.zeros(3), np.ones(3))
    assert none["lower"] == 0.0 and none["upper"] == pytest.approx(-math.log(0.025) / 3)


def test_first_alarm_delays() -> None:
    alarms = np.array([[1, 0, 0, 1, 0], [0, 0, 0, 0, 0], [0, 0, 1, 1, 0]], dtype=float)
    assert first_alarm_delays(alarms, 2) == [1, None, 0]
