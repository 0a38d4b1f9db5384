"""The CUSUM's false-alarm rate against Siegmund's approximation, and the monitor's alarms on
simulations with a known answer (a shift injected at a known batch, or none)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation.errors import EvaluationInputError
from evaluation.health import BatchObservation, HealthMonitor, HealthThresholds, MonitorConfig
from evaluation.health.alarms import Cusum, cusum_run, cusum_threshold, siegmund_arl, standardised_residual


def test_siegmund_threshold_inverts_the_run_length() -> None:
    h = cusum_threshold(0.5, 500.0)
    assert siegmund_arl(0.5, h) / 2 == pytest.approx(500.0)
    assert 4.5 < h < 5.5
    with pytest.raises(EvaluationInputError):
        cusum_threshold(0.5, 1.0)


@pytest.mark.parametrize("arl", [50.0, 200.0])
def test_cusum_false_alarm_rate_on_null_data(arl: float) -> None:
    # N(0, 1) increments: the empirical in-control run length is the approximation's, within 15%
    # (Siegmund's formula is accurate to a few per cent in this range; 300,000 steps give
    # 1,500-6,000 alarms, a relative standard error of 1.3-2.6%).
    h = cusum_threshold(0.5, arl)
    rng = np.random.default_rng(11)
    _, alarms = cusum_run(rng.standard_normal(300_000), 0.5, h)
    assert 300_000 / alarms.sum() == pytest.approx(arl, rel=0.15)


def test_cusum_detects_a_shift_and_restarts() -> None:
    z = np.r_[np.zeros(10), np.full(10, 2.0)]
    stats, alarms = cusum_run(z, 0.5, 4.0)
    # 1.5 per step after the shift: crosses 4 on the third shifted step, then starts again.
    assert np.flatnonzero(alarms).tolist() == [12, 15, 18]
    state, stat, fired = Cusum().step(math.nan, 0.5, 4.0)
    assert state == Cusum() and not fired


def test_standardised_residual() -> None:
    p = np.array([0.1, 0.2, 0.5])
    y = np.array([1.0, 0.0, 1.0])
    assert standardised_residual(p, y) == pytest.approx((2 - 0.8) / math.sqrt(0.09 + 0.16 + 0.25))


def _observations(
    rng: np.random.Generator, batches: int, *, feature_shift: float = 0.0, rate_factor: float = 1.0, shift_at: int = 10
) -> list[BatchObservation]:
    out = []
    # 200 users with 5 fixed candidates each, one sent; a tenth of the users change their item per batch.
    users = np.repeat(np.arange(200), 5)
    items = rng.integers(0, 30, users.size)
    choice = rng.integers(0, 5, 200)
    for b in range(batches):
        change = rng.random(200) < 0.1
        choice = np.where(change, rng.integers(0, 5, 200), choice)
        x = np.zeros(users.size)
        x[np.arange(200) * 5 + choice] = 1.0
        delta = feature_shift if b >= shift_at else 0.0
        features = rng.standard_normal((users.size, 3)) + np.array([delta, 0.0, 0.0])
        p_conv = rng.uniform(0.02, 0.2, users.size)
        p_unsub = rng.uniform(0.005, 0.03, users.size)
        factor = rate_factor if b >= shift_at else 1.0
        sent = x > 0
        conv = (rng.random(sent.sum()) < np.minimum(factor * p_conv[sent], 1.0)).astype(float)
        unsub = (rng.random(sent.sum()) < p_unsub[sent]).astype(float)
        out.append(
            BatchObservation(
                batch=b,
                pair_user=users,
                pair_item=items,
                propensity=x,
                features=features,
                predicted={"conversion": p_conv, "unsubscription": p_unsub},
                outcomes={"conversion": (p_conv[sent], conv), "unsubscription": (p_unsub[sent], unsub)},
            )
        )
    return out


def _alarm_batches(monitor: HealthMonitor, observations: list[BatchObservation]) -> dict[str, list[int]]:
    fired: dict[str, list[int]] = {}
    for obs in observations:
        for alarm in monitor.observe(obs).alarms:
            fired.setdefault(alarm.name, []).append(alarm.batch)
    return fired


def test_monitor_is_quiet_on_a_stationary_stream() -> None:
    fired = _alarm_batches(HealthMonitor(), _observations(np.random.default_rng(0), 40))
    assert fired == {}


def test_monitor_raises_feature_drift_at_the_shift() -> None:
    fired = _alarm_batches(HealthMonitor(), _observations(np.random.default_rng(1), 20, feature_shift=1.0))
    assert fired["feature_drift"] == list(range(10, 20))
    assert "rate_shift.conversion" not in fired


def test_monitor_raises_the_rate_alarm_after_the_shift() -> None:
    fired = _alarm_batches(HealthMonitor(), _observations(np.random.default_rng(2), 20, rate_factor=2.0))
    # 200 sends of mean rate 0.11: a doubled rate adds ~ +4.9 standard deviations per batch, so
    # S+ passes h ~ 5.07 in the first or second shifted batch.
    assert fired["rate_shift.conversion"][0] in (10, 11)
    assert "feature_drift" not in fired and "rate_shift.unsubscription" not in fired


def test_reference_features_given_are_used_from_the_first_batch() -> None:
    rng = np.random.default_rng(3)
    monitor = HealthMonitor(MonitorConfig(reference_batches=2), reference_features=rng.standard_normal((1000, 3)))
    obs = _observations(rng, 1, feature_shift=1.0, shift_at=0)[0]
    health = monitor.observe(obs)
    assert [a.name for a in health.alarms] == ["feature_drift"]
    assert health.values["feature_psi_max"] > 0.2


def test_thresholds_are_validated() -> None:
    with pytest.raises(EvaluationInputError, match="psi"):
        HealthThresholds(psi=0.0)
