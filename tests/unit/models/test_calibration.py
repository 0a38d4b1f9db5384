"""Isotonic and Platt calibration of Thompson samples (heuristic vs naive), the family switch and the ECE."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import expit
from sklearn.isotonic import IsotonicRegression

from models.calibration import (
    IsotonicCalibrator,
    PlattCalibrator,
    expected_calibration_error,
    fit_calibrator,
)
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
        (lambda: PlattCalibrator.fit([0.1, 0.2], [1.0]), ShapeError, "same length"),
        (lambda: PlattCalibrator.fit([0.1, 0.2], [1.0, 2.0]), ModelInputError, r"\[0, 1\]"),
        (lambda: PlattCalibrator.fit([0.1, 0.2], [1.0, 0.0], prior_std_slope=0.0), ModelInputError, "> 0"),
        (lambda: PlattCalibrator(0.0, 0.0), ModelInputError, "slope"),
        (lambda: PlattCalibrator(1.0, 0.0).apply([np.inf]), ModelInputError, "NaN or inf"),
    ],
)
def test_invalid_inputs(call, error, message) -> None:
    with pytest.raises(error, match=message):
        call()


def _platt_objective(a: float, b: float, z: np.ndarray, r: np.ndarray, sa: float, sb: float) -> float:
    eta = a * z + b
    return float(np.sum(np.logaddexp(0.0, eta) - r * eta) + 0.5 * ((a - 1) / sa) ** 2 + 0.5 * (b / sb) ** 2)


def test_platt_fit_is_the_penalised_likelihood_optimum_of_a_brute_force_grid() -> None:
    rng = np.random.default_rng(7)
    p = expit(rng.normal(-3.0, 1.0, size=400))
    r = (rng.random(400) < expit(1.5 * np.log(p / (1 - p)) + 0.5)).astype(float)
    fitted = PlattCalibrator.fit(p, r)
    z = np.log(p / (1 - p))
    grid_a, grid_b = np.meshgrid(np.linspace(0.2, 3.0, 281), np.linspace(-3.0, 3.0, 601), indexing="ij")
    values = np.vectorize(lambda a, b: _platt_objective(a, b, z, r, 0.5, 1.0))(grid_a, grid_b)
    i, j = np.unravel_index(np.argmin(values), values.shape)
    # The grid step is 0.01: the optimum lies within a step of the grid's best point, and no
    # grid point beats it.
    assert abs(fitted.slope - grid_a[i, j]) <= 0.011 and abs(fitted.intercept - grid_b[i, j]) <= 0.011
    assert _platt_objective(fitted.slope, fitted.intercept, z, r, 0.5, 1.0) <= values.min() + 1e-9


def test_platt_recovers_a_known_miscalibration_within_three_standard_errors() -> None:
    rng = np.random.default_rng(11)
    n = 200_000
    z = rng.normal(-2.5, 1.2, size=n)
    true_a, true_b = 1.6, -0.7
    r = (rng.random(n) < expit(true_a * z + true_b)).astype(float)
    fitted = PlattCalibrator.fit(expit(z), r)
    # Standard errors from the observed information at the truth (the prior is negligible here).
    q = expit(true_a * z + true_b)
    v = q * (1 - q)
    info = np.array([[v @ (z * z), v @ z], [v @ z, v.sum()]])
    se = np.sqrt(np.diag(np.linalg.inv(info)))
    assert abs(fitted.slope - true_a) <= 3 * se[0]
    assert abs(fitted.intercept - true_b) <= 3 * se[1]


def test_a_scarce_rare_outcome_gets_a_smooth_map_that_never_collapses_to_zero() -> None:
    # A ~1% outcome on a 300-row holdout: three or so events. Isotonic makes a step map whose
    # lowest level is 0 (pairs below its first knot look free); Platt stays near the identity.
    rng = np.random.default_rng(3)
    p = expit(rng.normal(-4.6, 0.8, size=300))
    r = (rng.random(300) < p).astype(float)
    iso = IsotonicCalibrator.fit(p, r)
    chosen = fit_calibrator(p, r)
    assert isinstance(chosen, PlattCalibrator)
    grid = np.sort(p)
    mapped = chosen.apply(grid)
    assert np.all(mapped > 0) and np.all(np.diff(mapped) > 0)
    assert len(np.unique(chosen.apply(p))) == len(np.unique(p))
    assert iso.apply(grid).min() == 0.0 and len(np.unique(iso.apply(p))) <= 5
    # Shrunk towards the identity: the map's mean on the holdout is between the predictions'
    # mean and the observed rate.
    lo, hi = sorted([p.mean(), r.mean()])
    assert lo - 1e-9 <= chosen.apply(p).mean() <= hi + 1e-9


@pytest.mark.parametrize(("rate", "n", "expected"), [(0.01, 2_000, PlattCalibrator), (0.3, 5_000, IsotonicCalibrator)])
def test_fit_calibrator_switches_family_on_the_rarer_class_count(rate: float, n: int, expected: type) -> None:
    rng = np.random.default_rng(5)
    p = np.clip(rng.normal(rate, rate / 3, size=n), 1e-4, 1 - 1e-4)
    r = (rng.random(n) < p).astype(float)
    assert isinstance(fit_calibrator(p, r), expected)
    assert isinstance(fit_calibrator(p, r, min_isotonic_events=0), IsotonicCalibrator)


def test_heuristic_platt_keeps_exploration_variance_where_naive_platt_shrinks_it() -> None:
    rng, _, outcome, det_logit, sampled = exploration_problem(1, n=20_000)
    heuristic = PlattCalibrator.fit(expit(det_logit), outcome, mode="heuristic")
    naive = PlattCalibrator.fit(sampled, outcome, mode="naive")
    # The deterministic model is 0.9 θ - 0.2, so the heuristic slope is near 1 / 0.9; the naive
    # fit sees the sampling noise as error and its slope shrinks (regression dilution).
    assert heuristic.slope == pytest.approx(1 / 0.9, rel=0.1)
    assert naive.slope < 0.8 * heuristic.slope
