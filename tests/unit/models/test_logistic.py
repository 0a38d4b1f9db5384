"""BayesianLogisticHead against an independent Newton solve and scipy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
from scipy.special import expit

from models.errors import ModelInputError
from models.logistic import BayesianLogisticHead, LogisticHeadConfig


def make_data(seed: int, n: int = 500, d: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.normal(size=(n, d - 1)), np.ones(n)])
    w = rng.normal(size=d)
    y = (rng.random(n) < expit(X @ w)).astype(float)
    return X, y


def reference_newton(X, y, m0, P0, iters=60):
    """Plain (undamped) Newton written independently of the code under test."""
    w = m0.copy()
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(X @ w)))
        grad = X.T @ (p - y) + P0 @ (w - m0)
        hess = P0 + (X * (p * (1 - p))[:, None]).T @ X
        w = w - np.linalg.solve(hess, grad)
    p = 1.0 / (1.0 + np.exp(-(X @ w)))
    return w, P0 + (X * (p * (1 - p))[:, None]).T @ X


def test_laplace_mean_and_precision_equal_independent_newton_and_scipy() -> None:
    X, y = make_data(0)
    lam = 0.8
    head = BayesianLogisticHead(LogisticHeadConfig(dim=5, prior_precision=lam))
    head.fit(X, y)
    w_ref, H_ref = reference_newton(X, y, np.zeros(5), lam * np.eye(5))
    np.testing.assert_allclose(head.mean, w_ref, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(head.precision, H_ref, rtol=1e-6, atol=1e-9)

    def neg_log_post(w):
        f = X @ w
        return np.sum(np.logaddexp(0.0, f) - y * f) + 0.5 * lam * w @ w

    def grad(w):
        return X.T @ (expit(X @ w) - y) + lam * w

    res = scipy.optimize.minimize(neg_log_post, np.zeros(5), jac=grad, method="BFGS", options={"gtol": 1e-11})
    np.testing.assert_allclose(head.mean, res.x, rtol=1e-6, atol=1e-7)
    # The MAP is a stationary point of the log posterior.
    assert np.linalg.norm(grad(head.mean)) < 1e-8


def test_online_update_with_many_steps_is_map_under_laplace_prior() -> None:
    X, y = make_data(1, n=400)
    head = BayesianLogisticHead(LogisticHeadConfig(dim=5, prior_precision=1.0))
    head.fit(X[:300], y[:300])
    m0, P0 = head.mean.copy(), head.precision.copy()
    head.update_batch(X[300:], y[300:], n_steps=40)
    w_ref, H_ref = reference_newton(X[300:], y[300:], m0, P0)
    np.testing.assert_allclose(head.mean, w_ref, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(head.precision, H_ref, rtol=1e-6, atol=1e-9)
    assert head.n_obs == 400


def test_single_observation_update_is_one_newton_step() -> None:
    X, y = make_data(2, n=200)
    head = BayesianLogisticHead(LogisticHeadConfig(dim=5))
    head.fit(X[:-1], y[:-1])
    m0, P0 = head.mean.copy(), head.precision.copy()
    x, r = X[-1], y[-1]
    head.update(x, r)
    p = expit(x @ m0)
    H0 = P0 + p * (1 - p) * np.outer(x, x)
    w1 = m0 - np.linalg.solve(H0, x * (p - r))  # prior gradient is zero at m0
    p1 = expit(x @ w1)
    np.testing.assert_allclose(head.mean, w1, rtol=1e-12)
    np.testing.assert_allclose(head.precision, P0 + p1 * (1 - p1) * np.outer(x, x), rtol=1e-12)


def test_discounted_online_prior() -> None:
    X, y = make_data(3, n=100)
    cfg = LogisticHeadConfig(dim=5, prior_precision=2.0, gamma=0.9)
    head = BayesianLogisticHead(cfg)
    head.fit(X[:80], y[:80])
    m0, H = head.mean.copy(), head.precision.copy()
    head.update_batch(X[80:], y[80:], n_steps=40)
    w_ref, H_ref = reference_newton(X[80:], y[80:], m0, 0.9 * H + 0.1 * 2.0 * np.eye(5))
    np.testing.assert_allclose(head.mean, w_ref, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(head.precision, H_ref, rtol=1e-6, atol=1e-9)


def test_probabilities_samples_and_ucb() -> None:
    X, y = make_data(4, n=300)
    head = BayesianLogisticHead(LogisticHeadConfig(dim=5))
    head.fit(X, y)
    Q = X[:4] * 2
    rng = np.random.default_rng(0)
    samples = head.sample_probabilities(Q, 20_000, rng)
    assert samples.shape == (20_000, 4) and np.all((samples > 0) & (samples < 1))
    mc = samples.mean(0)
    # The probit approximation of E[σ(f)] is accurate to about 1e-2.
    np.testing.assert_allclose(head.predictive_probability(Q), mc, atol=0.02)
    assert np.array_equal(head.sample_probabilities(Q, 2, rng, tau=0.0)[0], head.mean_probability(Q))
    assert np.all(head.ucb_probability(Q, 1.0) >= head.mean_probability(Q))


def test_non_binary_outcomes_are_rejected() -> None:
    head = BayesianLogisticHead(LogisticHeadConfig(dim=2))
    with pytest.raises(ModelInputError, match="0/1"):
        head.fit(np.ones((3, 2)), [0.0, 0.5, 1.0])
