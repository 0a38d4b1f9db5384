"""BayesianLinearHead against closed forms built independently with numpy."""

from __future__ import annotations

import numpy as np
import pytest

from models.errors import ModelInputError, ShapeError
from models.logistic import BayesianLogisticHead, LogisticHeadConfig
from models.posterior import BayesianLinearHead, LinearHeadConfig, stacked_predictive, state_size


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def closed_form(X: np.ndarray, y: np.ndarray, lam: float, sigma2: float, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and covariance from the explicitly weighted design (newest row weight 1)."""
    n, d = X.shape
    weights = np.array([gamma ** (n - 1 - i) for i in range(n)])
    Xw = X * np.sqrt(weights)[:, None]
    A = lam * np.eye(d) + Xw.T @ Xw / sigma2
    b = X.T @ (weights * y) / sigma2
    return np.linalg.solve(A, b), np.linalg.solve(A, np.eye(d))


@pytest.mark.parametrize("gamma", [1.0, 0.995])
def test_rank1_updates_equal_batch_closed_form(gamma: float) -> None:
    rng = np.random.default_rng(11)
    d, n = 6, 1000
    theta = rng.normal(size=d)
    X = rng.normal(size=(n, d))
    y = X @ theta + 0.3 * rng.normal(size=n)
    cfg = LinearHeadConfig(dim=d, prior_precision=0.7, noise_variance=0.09, gamma=gamma)

    head = BayesianLinearHead(cfg)
    for x_i, y_i in zip(X, y):
        head.update(x_i, y_i)
    mean, cov = closed_form(X, y, 0.7, 0.09, gamma)
    assert rel_err(head.mean, mean) < 1e-8
    assert rel_err(head.covariance(), cov) < 1e-8

    # update_batch is the same model: in one call and in uneven chunks.
    whole = BayesianLinearHead(cfg)
    whole.update_batch(X, y)
    chunks = BayesianLinearHead(cfg)
    for lo, hi in [(0, 1), (1, 300), (300, 301), (301, 1000)]:
        chunks.update_batch(X[lo:hi], y[lo:hi])
    for other in (whole, chunks):
        assert rel_err(other.mean, mean) < 1e-8
        assert rel_err(other.covariance(), cov) < 1e-8
    assert head.n_obs == whole.n_obs == chunks.n_obs == n


def test_discount_keeps_prior_after_quiet_directions() -> None:
    # Data only along e1: with stabilised forgetting the e2 variance stays exactly 1/λ.
    cfg = LinearHeadConfig(dim=2, prior_precision=2.0, gamma=0.9)
    head = BayesianLinearHead(cfg)
    for _ in range(500):
        head.update(np.array([1.0, 0.0]), 1.0)
    assert head.covariance()[1, 1] == pytest.approx(0.5, rel=1e-12)


def test_predictive_std_and_ucb_match_explicit_quadratic_form() -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 4))
    y = rng.normal(size=200)
    head = BayesianLinearHead(LinearHeadConfig(dim=4, prior_precision=1.5, noise_variance=0.5))
    head.update_batch(X, y)
    mean, cov = closed_form(X, y, 1.5, 0.5, 1.0)
    Q = rng.normal(size=(50, 4)) * 3
    expected_std = np.sqrt(np.einsum("ij,jk,ik->i", Q, cov, Q))
    np.testing.assert_allclose(head.predictive_std(Q), expected_std, rtol=1e-10)
    np.testing.assert_allclose(head.ucb(Q, alpha=0.8), Q @ mean + 0.8 * expected_std, rtol=1e-10)


def _fitted_heads() -> list[tuple[str, object]]:
    rng = np.random.default_rng(5)
    X = rng.normal(size=(40, 3))
    linear = BayesianLinearHead(LinearHeadConfig(dim=3, prior_precision=1.0, noise_variance=0.5))
    linear.update_batch(X, X @ np.array([1.0, -0.5, 0.2]) + rng.normal(size=40))
    logistic = BayesianLogisticHead(LogisticHeadConfig(dim=3))
    logistic.fit(X, (rng.random(40) < 0.4).astype(float))
    return [("linear", linear), ("logistic", logistic)]


@pytest.mark.parametrize("tau", [1.0, 0.3])
@pytest.mark.parametrize("name_head", _fitted_heads(), ids=lambda p: p[0])
def test_thompson_draws_match_posterior_within_three_standard_errors(name_head, tau: float) -> None:
    _, head = name_head
    n = 20_000
    W = head.sample_weights(n, np.random.default_rng(2024), tau=tau)
    mean = head.mean
    # The posterior Σ computed independently: inverse of the precision.
    Sigma = tau * np.linalg.inv(head.precision)
    se_mean = np.sqrt(np.diag(Sigma) / n)
    assert np.all(np.abs(W.mean(axis=0) - mean) < 3 * se_mean), (W.mean(axis=0) - mean) / se_mean
    S = np.cov(W, rowvar=False)
    diag = np.diag(Sigma)
    se_cov = np.sqrt((np.outer(diag, diag) + Sigma**2) / n)
    z = np.abs(S - Sigma) / se_cov
    print(f"max |z| mean {np.max(np.abs(W.mean(0) - mean) / se_mean):.2f}, cov {z.max():.2f}")
    assert np.all(z < 3), z


def test_sample_marginal_per_row_moments_and_tau_zero() -> None:
    _, head = _fitted_heads()[0]
    Q = np.array([[1.0, 0.0, 0.0], [0.5, -2.0, 1.0]])
    rng = np.random.default_rng(8)
    draws = head.sample_marginal(np.tile(Q, (20_000, 1)), rng, tau=2.0).reshape(20_000, 2)
    cov = np.linalg.inv(head.precision)
    var = 2.0 * np.einsum("ij,jk,ik->i", Q, cov, Q)
    assert np.all(np.abs(draws.mean(0) - Q @ head.mean) < 3 * np.sqrt(var / 20_000))
    assert np.all(np.abs(draws.var(0) / var - 1) < 3 * np.sqrt(2 / 20_000))
    assert np.array_equal(head.sample_marginal(Q, rng, tau=0.0), Q @ head.mean)
    assert np.array_equal(head.sample(Q, 3, rng, tau=0.0), np.tile(Q @ head.mean, (3, 1)))


def test_state_roundtrip_is_bit_identical_and_compact() -> None:
    rng = np.random.default_rng(1)
    cfg = LinearHeadConfig(dim=5, gamma=0.99)
    head = BayesianLinearHead(cfg)
    head.update_batch(rng.normal(size=(30, 5)), rng.normal(size=30))
    head.update(rng.normal(size=5), 0.3)
    state = head.to_state()
    assert state.shape == (state_size(5),) == (5 * 6 // 2 + 5 + 1,)
    for restored in (BayesianLinearHead.from_state(cfg, state), BayesianLinearHead.from_state(cfg, state.tobytes())):
        assert np.array_equal(restored.precision, head.precision)
        assert np.array_equal(restored.b, head.b)
        assert restored.n_obs == head.n_obs == 31
        assert np.array_equal(restored.to_state(), state)


def test_stacked_predictive_equals_each_head() -> None:
    rng = np.random.default_rng(4)
    cfg = LinearHeadConfig(dim=3, prior_precision=0.5)
    heads = []
    for k in range(4):
        h = BayesianLinearHead(cfg)
        h.update_batch(rng.normal(size=(10 + k, 3)), rng.normal(size=10 + k))
        heads.append(h)
    X = rng.normal(size=(4, 7, 3))
    mean, std = stacked_predictive(cfg, np.stack([h.to_state() for h in heads]), X)
    for k, h in enumerate(heads):
        np.testing.assert_allclose(mean[k], h.predictive_mean(X[k]), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(std[k], h.predictive_std(X[k]), rtol=1e-10)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda h: h.update(np.ones(4), 1.0), ShapeError, r"shape \(3,\)"),
        (lambda h: h.update(np.array([1.0, np.nan, 0.0]), 1.0), ModelInputError, "NaN"),
        (lambda h: h.update(np.ones(3), np.inf), ModelInputError, "NaN or inf"),
        (lambda h: h.update_batch(np.ones((2, 3)), np.ones(3)), ShapeError, r"y must have shape \(2,\)"),
        (lambda h: h.predictive_std(np.ones((2, 2))), ShapeError, r"\(n, 3\)"),
        (lambda h: h.sample_weights(2, np.random.default_rng(0), tau=-1.0), ModelInputError, "tau"),
        (lambda h: BayesianLinearHead.from_state(h.config, np.ones(5)), ShapeError, "state"),
    ],
)
def test_invalid_inputs_raise_typed_errors(call, error, message) -> None:
    head = BayesianLinearHead(LinearHeadConfig(dim=3))
    with pytest.raises(error, match=message):
        call(head)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dim": 0}, "dim"),
        ({"dim": 2, "prior_precision": 0.0}, "prior_precision"),
        ({"dim": 2, "noise_variance": -1.0}, "noise_variance"),
        ({"dim": 2, "gamma": 1.5}, "gamma"),
    ],
)
def test_config_validation(kwargs, message) -> None:
    with pytest.raises(ModelInputError, match=message):
        LinearHeadConfig(**kwargs)
