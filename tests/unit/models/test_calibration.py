"""Isotonic calibration of Thompson samples (heuristic vs naive) and the ECE."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import expit
from sklearn.isotonic import IsotonicRegression

from models.calibration import IsotonicCalibrator, expected_calibration_error
from models.errors import ModelInputError, ShapeError


def exploration_problem(seed: int, n: int = 50_000, noise: float = 1.0):
    """True logits θ, a slightly miscalibrated deterministic model, and its Thompson samples."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(-1.0, 1.0, size=n)
    outcome = (rng.random(n) < expit(theta)).astype(float)
    det_logit = 0.9 * theta - 0.2  # informative, mildly miscalibrated
    sampled = expit(det_logit + noise * rng.normal(size=n))  # one Thompson sample per pair (fit data)
    return rng, theta, outcome, det_logit, sampled


def test_heuristic_keeps_exploration_variance_where_naive_collapses_it() -> None:
    rng, _, outcome, det_logit, sampled = exploration_problem(0)
    heuristic = IsotonicCalibrator.fit_heuristic(expit(det_logit), outcome)
    naive = IsotonicCalibrator.fit_naive(sampled, outcome)
    # Serving: 200 Thompson samples for each of 2,000 pairs; exploration variance is the
    # per-pair variance across samples, averaged over pairs.
    pairs = det_logit[:2000]
    draws = expit(pairs[None, :] + rng.normal(size=(200, 2000)))
    before = draws.var(axis=0).mean()
    kept_heuristic = heuristic.apply(draws).var(axis=0).mean() / before
    kept_naive = naive.apply(draws).var(axis=0).mean() / before
    print(f"variance kept: heuristic {kept_heuristic:.3f}, naive {kept_naive:.3f}")
    assert kept_heuristic >= 0.8
    assert kept_naive < 0.5
    # And the heuristic map does calibrate the deterministic predictions.
    p_det = expit(det_logit)
    assert expected_calibration_error(heuristic.apply(p_det), outcome) < expected_calibration_error(p_det, outcome)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(2, 300),
    noise=st.floats(0.0, 3.0),
    ties=st.booleans(),
)
def test_both_maps_are_monotone_and_bounded(seed: int, n: int, noise: float, ties: bool) -> None:
    rng = np.random.default_rng(seed)
    det = rng.random(n)
    if ties:
        det = np.round(det, 1)
    outcome = (rng.random(n) < det).astype(float)
    sampled = expit(np.log(det + 1e-3) - np.log1p(1e-3 - det) + noise * rng.normal(size=n))
    grid = np.linspace(-0.5, 1.5, 401)
    for cal in (IsotonicCalibrator.fit_heuristic(det, outcome), IsotonicCalibrator.fit_naive(sampled, outcome)):
        mapped = cal.apply(grid)
        assert np.all(np.diff(mapped) >= 0)
        assert np.all((mapped >= 0) & (mapped <= 1))


def test_apply_equals_sklearn_predict() -> None:
    rng = np.random.default_rng(2)
    pred = rng.random(3000)
    outcome = (rng.random(3000) < pred**2).astype(float)
    cal = IsotonicCalibrator.fit(pred, outcome)
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(pred, outcome)
    query = np.concatenate([rng.random(1000), [-1.0, 0.0, 1.0, 2.0]])
    np.testing.assert_allclose(cal.apply(query), iso.predict(query), rtol=0, atol=1e-12)
    assert cal.apply(query.reshape(4, 251)).shape == (4, 251)


def test_expected_calibration_error_matches_a_loop() -> None:
    rng = np.random.default_rng(3)
    pred = np.concatenate([rng.random(5000), [0.0, 1.0]])
    outcome = (rng.random(pred.size) < np.clip(pred + 0.1, 0, 1)).astype(float)
    edges = np.linspace(0, 1, 16)
    ece = 0.0
    for b in range(15):
        inside = (pred >= edges[b]) & ((pred < edges[b + 1]) if b < 14 else (pred <= 1.0))
        if inside.any():
            ece += inside.mean() * abs(pred[inside].mean() - outcome[inside].mean())
    assert expected_calibration_error(pred, outcome, n_bins=15) == pytest.approx(ece, rel=1e-12)
    calibrated = rng.random(200_000)
    assert expected_calibration_error(calibrated, (rng.random(200_000) < calibrated).astype(float)) < 0.01


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: IsotonicCalibrator.fit([0.1, 0.2], [1.0]), ShapeError, "same length"),
        (lambda: IsotonicCalibrator.fit([0.1, np.nan], [1.0, 0.0]), ModelInputError, "NaN"),
        (lambda: IsotonicCalibrator(np.array([0.2, 0.1]), np.array([0.0, 1.0])), ModelInputError, "non-decreasing"),
        (lambda: expected_calibration_error([1.2], [1.0]), ModelInputError, r"\[0, 1\]"),
    ],
)
def test_invalid_inputs(call, error, message) -> None:
    with pytest.raises(error, match=message):
        call()
