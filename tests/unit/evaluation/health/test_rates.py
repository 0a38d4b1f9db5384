"""The outcome-rate CUSUM against independent truths: a brute-force likelihood ratio and Page's
max-over-start-points form on a tiny sequence, simulated run lengths against the Markov chain's
ARL (in control and after a 2x odds shift), and the null odds estimate on data of a known ratio."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation.errors import EvaluationInputError
from evaluation.health import BatchObservation, HealthMonitor, HealthThresholds, MonitorConfig
from evaluation.health.rates import (
    RateCusum,
    chart_arls,
    cusum_update,
    null_odds_estimate,
    odds_llr,
    poisson_like,
    rate_threshold,
    two_sided_arl,
)


def _brute_llr(p: np.ndarray, y: np.ndarray, ratio: float, null_odds: float) -> float:
    # the two likelihoods written out pair by pair
    total = 0.0
    for pi, yi in zip(p, y):
        odds0 = null_odds * pi / (1 - pi)
        q0 = odds0 / (1 + odds0)
        q1 = ratio * odds0 / (1 + ratio * odds0)
        l1 = q1 if yi else 1 - q1
        l0 = q0 if yi else 1 - q0
        total += math.log(l1 / l0)
    return total


def test_the_cusum_is_pages_maximum_of_brute_force_likelihood_ratios() -> None:
    rng = np.random.default_rng(3)
    batches = []
    for _ in range(12):
        n = int(rng.integers(0, 6))
        p = rng.uniform(0.05, 0.6, n)
        batches.append((p, (rng.random(n) < 0.5).astype(float)))
    ratio, c, h = 2.0, 1.3, 0.8
    state, stats, fired = RateCusum(), [], []
    for p, y in batches:
        state, stat, alarm = state.step(p, y, ratio, c, h)
        stats.append(stat)
        fired.append(alarm)
    # brute force: S_n = max(0, max over start points k after the last alarm of sum_{k..n} l_j), per chart
    expected_stats, expected_fired, start = [], [], 0
    for t in range(len(batches)):
        charts = []
        for r in (ratio, 1 / ratio):
            ll = [_brute_llr(*batches[j], r, c) for j in range(start, t + 1)]
            charts.append(max(0.0, max(sum(ll[k:]) for k in range(len(ll)))))
        expected_stats.append(max(charts))
        expected_fired.append(max(charts) > h)
        if expected_fired[-1]:
            start = t + 1
    assert stats == pytest.approx(expected_stats, abs=1e-10)
    assert fired == expected_fired and any(fired)
    assert float(odds_llr(*batches[0], ratio, c)) == pytest.approx(_brute_llr(*batches[0], ratio, c))


def _run_lengths(
    rng: np.random.Generator, chains: int, n: int, p: float, odds: float, ratio: float, h: float
) -> np.ndarray:
    # one-sided chart of many independent streams at once; every batch: n pairs predicted at p
    q = odds * p / (1 - p + odds * p)
    s = np.zeros(chains)
    length = np.zeros(chains)
    alive = np.ones(chains, dtype=bool)
    predicted = np.full((chains, n), p)
    t = 0
    while alive.any():
        t += 1
        y = (rng.random((chains, n)) < q).astype(float)
        s = cusum_update(s, odds_llr(predicted, y, ratio))
        new = alive & (s > h)
        length[new] = t
        alive &= ~new
    return length


@pytest.mark.parametrize(("odds", "h"), [(1.0, 2.5), (2.0, 4.0)])
def test_simulated_run_length_is_the_markov_chains(odds: float, h: float) -> None:
    """In control (odds 1: the false-alarm rate is 1 / ARL) and after a 2x odds shift (the
    detection delay from a fresh chart), batches of 100 pairs at 3%: ~Poisson(3) events."""
    n, p = 100, 0.03
    arl = chart_arls(np.full(n, p), 2.0, h, true_odds=odds)[0]
    lengths = _run_lengths(np.random.default_rng(7), 3000, n, p, odds, 2.0, h)
    se = lengths.std(ddof=1) / math.sqrt(lengths.size)
    assert abs(lengths.mean() - arl) < 3 * se, (lengths.mean(), arl, se)


def test_two_sided_threshold_meets_its_target() -> None:
    batch = poisson_like(3.0, 300)
    h = rate_threshold(batch, 2.0, 200.0)
    assert two_sided_arl(batch, 2.0, h) == pytest.approx(200.0, rel=0.01)
    up, down = chart_arls(batch, 2.0, h)
    # Wald: E exp(LLR) = 1 under the null, so each chart's ARL exceeds exp(h)
    assert min(up, down) > math.exp(h)
    with pytest.raises(EvaluationInputError):
        rate_threshold(batch, 2.0, 1.0)


def test_two_sided_run_length_is_near_the_combined_charts() -> None:
    """``1 / (1 / ARL_upper + 1 / ARL_lower)`` against the two charts run together (the step the
    monitor runs): it ignores their dependence and is a few per cent high; within 6% here."""
    n, p, h, chains = 100, 0.03, 2.5, 3000
    rng = np.random.default_rng(1)
    predicted = np.full((chains, n), p)
    up, down = np.zeros(chains), np.zeros(chains)
    length, alive, t = np.zeros(chains), np.ones(chains, dtype=bool), 0
    while alive.any():
        t += 1
        y = np.asarray(rng.random((chains, n)) < p, dtype=float)
        up = cusum_update(up, odds_llr(predicted, y, 2.0))
        down = cusum_update(down, odds_llr(predicted, y, 0.5))
        new = alive & (np.maximum(up, down) > h)
        length[new] = t
        alive &= ~new
    assert length.mean() == pytest.approx(two_sided_arl(np.full(n, p), 2.0, h), rel=0.06)


def test_null_odds_estimate_recovers_a_known_ratio() -> None:
    rng = np.random.default_rng(5)
    p = rng.uniform(0.005, 0.08, 40_000)
    c = 1.25
    q = c * p / (1 - p + c * p)
    y = (rng.random(p.size) < q).astype(float)
    best, lower, upper = null_odds_estimate(p, y)
    assert lower < c < upper and lower < best < upper
    assert upper - lower < 0.25


def _rate_batches(rng: np.random.Generator, batches: int, odds_from: int, odds: float) -> list[BatchObservation]:
    out = []
    users = np.arange(300)
    for b in range(batches):
        p = rng.uniform(0.01, 0.2, users.size)
        r = odds if b >= odds_from else 1.0
        y = np.asarray(rng.random(users.size) < r * p / (1 - p + r * p), dtype=float)
        unsub = rng.uniform(0.005, 0.02, users.size)
        out.append(
            BatchObservation(
                batch=b,
                pair_user=users,
                pair_item=users % 20,
                propensity=np.ones(users.size),
                outcomes={
                    "conversion": (p, y),
                    "unsubscription": (unsub, np.asarray(rng.random(users.size) < unsub, dtype=float)),
                },
            )
        )
    return out


def test_the_monitor_raises_the_rate_alarm_after_a_2x_odds_shift_only() -> None:
    """20 seeded streams of 300 sends a batch (~31 expected conversions), odds x2 from batch 10:
    every stream alarms in batch 10 or 11, and the 140 monitored batches before the shift hold
    about as many alarms as an in-control ARL of 500 allows (0.28 expected; at most 2 here)."""
    solved = HealthMonitor(MonitorConfig(reference_batches=3))
    for obs in _rate_batches(np.random.default_rng(100), 4, 99, 1.0):
        health = solved.observe(obs)
    h = health.values["rate_h.conversion"]
    assert h == pytest.approx(rate_threshold(poisson_like(31.5, 300)), rel=0.05)
    first, before = [], 0
    for seed in range(20):
        monitor = HealthMonitor(MonitorConfig(thresholds=HealthThresholds(rate_h=h), reference_batches=3))
        fired = [
            health.batch
            for health in map(monitor.observe, _rate_batches(np.random.default_rng(seed), 16, 10, 2.0))
            for a in health.alarms
            if a.name == "rate_shift.conversion"
        ]
        before += sum(b < 10 for b in fired)
        first.append(min((b for b in fired if b >= 10), default=None))
    assert all(b is not None and b <= 11 for b in first), first
    assert before <= 2


def test_a_fixed_threshold_is_used_as_given() -> None:
    rng = np.random.default_rng(4)
    monitor = HealthMonitor(MonitorConfig(thresholds=HealthThresholds(rate_h=0.01), reference_batches=1))
    healths = [monitor.observe(o) for o in _rate_batches(rng, 4, 99, 1.0)]
    assert all(h.values["rate_h.conversion"] == 0.01 for h in healths)
    with pytest.raises(EvaluationInputError):
        HealthThresholds(rate_ratio=1.0)
