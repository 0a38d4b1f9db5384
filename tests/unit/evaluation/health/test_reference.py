"""The frozen read-out and the rate chart against it, against independent truths: the read-out
against the normal equations summed pair by pair on a tiny data set and against the exact
coefficients of predictions generated from a known quadratic logit; on simulated streams with a
persistent x2 odds shift, the chart against a frozen predictor detects what a chart against a
predictor that learns the shift misses; its in-control false alarm rate (of a biased frozen
predictor, with its null odds given) within 3 SE of the Markov chain's ARL; and the monitor's
``rate_shift_ref`` end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation.errors import EvaluationInputError
from evaluation.health import BatchObservation, HealthMonitor, HealthThresholds, MonitorConfig
from evaluation.health.rates import (
    chart_arls,
    cusum_update,
    null_odds_estimate,
    null_odds_mle,
    null_probability,
    odds_llr,
    poisson_like,
    rate_threshold,
)
from evaluation.health.reference import fit_readout, readout_design


def test_the_readout_is_the_least_squares_fit_written_out_pair_by_pair() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 2))
    p = rng.uniform(0.02, 0.6, 12)
    fit = fit_readout(x, p, degree=2)
    # brute force: the design written out by hand and the normal equations summed pair by pair
    gram, moment = np.zeros((6, 6)), np.zeros(6)
    logits = []
    for (a, b), pi in zip(x, p, strict=True):
        row = np.array([1.0, a, b, a * a, a * b, b * b])
        target = math.log(pi / (1 - pi))
        gram += np.outer(row, row)
        moment += row * target
        logits.append(target)
    coef = np.linalg.solve(gram, moment)
    assert fit.coef == pytest.approx(coef, abs=1e-9)
    fitted = np.array([coef @ [1.0, a, b, a * a, a * b, b * b] for a, b in x])
    resid = sum((t - f) ** 2 for t, f in zip(logits, fitted, strict=True))
    spread = sum((t - np.mean(logits)) ** 2 for t in logits)
    assert fit.r2 == pytest.approx(1 - resid / spread, abs=1e-12)
    assert fit.predict(x) == pytest.approx(1 / (1 + np.exp(-fitted)), abs=1e-12)
    linear = fit_readout(x, p, degree=1)
    assert linear.coef.shape == (3,) and linear.r2 <= fit.r2 + 1e-12


def test_the_readout_recovers_a_quadratic_logit_exactly() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 3))
    true = rng.normal(size=readout_design(x[:1], 2).shape[1])
    p = 1 / (1 + np.exp(-(readout_design(x, 2) @ true)))
    fit = fit_readout(x, p)
    assert fit.coef == pytest.approx(true, abs=1e-6)
    assert fit.r2 == pytest.approx(1.0, abs=1e-9)
    other = rng.normal(size=(5, 3))
    assert fit.predict(other) == pytest.approx(1 / (1 + np.exp(-(readout_design(other, 2) @ true))), rel=1e-6)
    with pytest.raises(EvaluationInputError):
        fit_readout(x, p, degree=3)
    with pytest.raises(EvaluationInputError):
        fit_readout(x, p[:-1])


def _streams(
    rng: np.random.Generator, streams: int, batches: int, frozen: np.ndarray, null: float, shift_at: int, h: float
) -> tuple[np.ndarray, np.ndarray]:
    """First alarm batch (or -1) of the chart against the frozen predictions and of the chart against
    a learning predictor, per stream. Truth: odds ``null`` x the frozen ones, x2 from ``shift_at`` on.
    The learner scales the frozen null odds by its estimate of the ratio from the previous 2 batches
    (their events over their frozen-null expected count): it absorbs the shift within 2 batches."""
    ratio = 1.5
    q_null = null_probability(frozen, null)
    first = np.full((2, streams), -1)
    charts = np.zeros((2, 2, streams))  # chart (frozen, learning) x side (up, down) x stream
    counts: list[np.ndarray] = []
    expected = float(q_null.sum())
    for b in range(batches):
        true = null_probability(frozen, null * (2.0 if b >= shift_at else 1.0))
        y = (rng.random((streams, frozen.size)) < true).astype(float)
        seen = counts[-2:]
        learnt = sum(seen, np.zeros(streams)) / (len(seen) * expected) if seen else np.ones(streams)
        odds = learnt[:, None]  # (streams, 1): the learner's odds multiplier of the frozen null
        learner = odds * q_null / (1.0 - q_null + odds * q_null)
        for k, (pred, c) in enumerate(((np.broadcast_to(frozen, y.shape), null), (learner, 1.0))):
            charts[k, 0] = cusum_update(charts[k, 0], odds_llr(pred, y, ratio, c))
            charts[k, 1] = cusum_update(charts[k, 1], odds_llr(pred, y, 1 / ratio, c))
            hit = charts[k].max(axis=0) > h
            first[k] = np.where((first[k] < 0) & hit & (b >= shift_at), b, first[k])
            charts[k][:, hit] = 0.0
        counts.append(y.sum(axis=1))
    return first[0], first[1]


def test_the_frozen_chart_detects_a_persistent_shift_a_learning_predictor_absorbs() -> None:
    """300 pairs a batch, ~6.6 expected events under a biased frozen predictor (null odds 1.2, as
    given), x2 odds from batch 3 on, 12 shifted batches: the frozen chart gains ~1.1 a batch
    (``2 E log 1.5 - 0.5 E`` at the chart's odds 1.5) against an h of ~5 and fires in every stream
    (9 in 10 within 3 batches here), the learner's chart gains only for ~2 batches (about 3 in 10)."""
    rng = np.random.default_rng(7)
    frozen = rng.uniform(0.01, 0.035, 300)
    null = 1.2
    h = rate_threshold(poisson_like(float(null_probability(frozen, null).sum()), 300))
    frozen_first, learning_first = _streams(rng, 400, 15, frozen, null, 3, h)
    frozen_delay = frozen_first[frozen_first >= 0] - 3
    assert (frozen_first >= 0).mean() > 0.98
    assert np.quantile(frozen_delay, 0.9) <= 5
    assert (learning_first >= 0).mean() < 0.5


def test_the_frozen_charts_false_alarm_rate_is_its_arl() -> None:
    """1,000 streams x 400 batches of a frozen predictor biased by odds 1.2 on the sent pairs (the
    chart given that null): alarms per batch within 3 SE of ``1 / ARL_up + 1 / ARL_down`` of the chain."""
    rng = np.random.default_rng(11)
    frozen = rng.uniform(0.01, 0.035, 300)
    null, target = 1.2, 100.0
    h = rate_threshold(poisson_like(float(null_probability(frozen, null).sum()), 300), target_arl=target)
    up_arl, down_arl = chart_arls(frozen, 1.5, h, null)
    rate = 1 / up_arl + 1 / down_arl
    streams, batches = 1000, 400
    alarms = _null_alarms(np.random.default_rng(12), streams, batches, frozen, null, h)
    n = streams * batches
    se = math.sqrt(rate * (1 - rate) / n)
    assert abs(alarms / n - rate) < 3 * se, (alarms / n, rate, se)


def _null_alarms(
    rng: np.random.Generator, streams: int, batches: int, frozen: np.ndarray, null: float, h: float
) -> int:
    q = null_probability(frozen, null)
    up, down = np.zeros(streams), np.zeros(streams)
    total = 0
    for _ in range(batches):
        y = (rng.random((streams, frozen.size)) < q).astype(float)
        up = cusum_update(up, odds_llr(np.broadcast_to(frozen, y.shape), y, 1.5, null))
        down = cusum_update(down, odds_llr(np.broadcast_to(frozen, y.shape), y, 1 / 1.5, null))
        hit = np.maximum(up, down) > h
        total += int(hit.sum())
        up[hit], down[hit] = 0.0, 0.0
    return total


def test_the_monitor_raises_the_reference_alarm_where_the_retrained_model_hides_the_shift() -> None:
    """Streams of 1,000 sends of a model exactly logistic in the features (so its read-out is
    exact). From batch 3 on the world's unsubscription odds are 1.6 x the reference model's (a
    stale model's bias on the pairs sent later), and x2 more from batch 8 on; the deployed model
    knows the world at once (its predictions are the truth in every batch), so ``rate_shift`` has
    nothing to see. ``rate_shift_ref`` estimates the run's null odds 1.6 from batches 3-5 (lag 3,
    3 batches: it starts at batch 8) and fires within 2 batches of the shift in every stream, never
    before it (a fixed h of 7: ~37 expected events a batch at the null, ~70 after the shift)."""
    coef = np.array([-4.0, 0.6, -0.4, 0.3])
    for seed in range(5):
        rng = np.random.default_rng(seed)
        monitor = HealthMonitor(MonitorConfig(thresholds=HealthThresholds(rate_h=7.0), reference_batches=3))
        fired: dict[str, list[int]] = {"rate_shift.unsubscription": [], "rate_shift_ref.unsubscription": []}
        for b in range(14):
            x = rng.normal(size=(1500, 3))
            offset = (math.log(1.6) if b >= 3 else 0.0) + (math.log(2.0) if b >= 8 else 0.0)
            p = 1 / (1 + np.exp(-(np.c_[np.ones(1500), x] @ coef + offset)))
            sent = np.sort(rng.choice(1500, 1000, replace=False))
            health = monitor.observe(
                BatchObservation(
                    batch=b,
                    pair_user=np.arange(1500),
                    pair_item=np.arange(1500) % 20,
                    propensity=np.ones(1500),
                    features=x,
                    predicted={"unsubscription": p},
                    outcomes={"unsubscription": (p[sent], (rng.random(sent.size) < p[sent]).astype(float))},
                    sent=sent,
                )
            )
            v = health.values
            assert v["reference_fit_r2.unsubscription"] == pytest.approx(1.0, abs=1e-9)
            assert math.isnan(v["rate_ref_cusum.unsubscription"]) == (b < 8)
            if b == 8:
                assert v["rate_ref_null_odds.unsubscription"] == pytest.approx(1.6, rel=0.2)
            for a in health.alarms:
                if a.name in fired:
                    fired[a.name].append(b)
        ref = fired["rate_shift_ref.unsubscription"]
        assert ref and min(ref) in (8, 9, 10), (seed, fired)
        assert len(fired["rate_shift.unsubscription"]) <= 1, (seed, fired)


def test_the_null_odds_mle_solves_its_score_and_recovers_a_known_ratio() -> None:
    rng = np.random.default_rng(5)
    p = rng.uniform(0.01, 0.2, 20000)
    y = (rng.random(p.size) < null_probability(p, 1.7)).astype(float)
    c = null_odds_mle(p, y)
    assert float((y - null_probability(p, c)).sum()) == pytest.approx(0.0, abs=1e-5)
    assert c == pytest.approx(1.7, rel=0.05)
    assert c == pytest.approx(null_odds_estimate(p, y)[0], rel=1e-6)
    assert null_odds_mle(p[:5], np.zeros(5)) == pytest.approx(math.exp(-10.0))


def test_without_sent_rows_there_is_no_reference_chart() -> None:
    monitor = HealthMonitor(MonitorConfig(thresholds=HealthThresholds(rate_h=5.0), reference_batches=1))
    p = np.full(10, 0.1)
    obs = BatchObservation(
        batch=0,
        pair_user=np.arange(10),
        pair_item=np.arange(10),
        propensity=np.ones(10),
        features=np.ones((10, 2)),
        predicted={"conversion": p},
        outcomes={"conversion": (p, np.zeros(10))},
    )
    monitor.observe(obs)
    health = monitor.observe(obs)
    assert math.isnan(health.values["rate_ref_cusum.conversion"])
    with pytest.raises(EvaluationInputError):
        MonitorConfig(readout_degree=3)
