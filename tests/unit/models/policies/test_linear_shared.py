"""Shared and hybrid linear policies against exact references: the discounted batch posterior, the
hybrid's variance under the joint ridge posterior."""

from __future__ import annotations

import numpy as np

from models.policies.registry import make_policy
from tests.unit.models.policies.test_linear import _history


def test_shared_discount_equals_batch() -> None:
    actions, X, r = _history(30, 3, 2, seed=3)
    policy = make_policy("shared_lints", 3, 2, gamma=0.8)
    for t in range(30):
        policy.update(int(actions[t]), X[t], float(r[t]))
    batch = type(policy).batch_posterior(3, 2, actions, X, r, gamma=0.8)
    assert batch is not None
    np.testing.assert_allclose(policy.posterior()["mean"], batch["mean"], rtol=1e-9)


def test_hybrid_uncertainty_is_the_joint_posterior_std() -> None:
    """Li et al.'s s_{t,a} equals the variance of zᵀβ + xᵀθ_a under the joint ridge posterior."""
    K, d, lam = 3, 2, 0.7
    actions, X, r = _history(25, K, d, seed=4)
    policy = make_policy("hybrid_linucb", K, d, prior_precision=lam)
    for t in range(25):
        policy.update(int(actions[t]), X[t], float(r[t]))
    rows = X[np.arange(25), actions]
    design = np.zeros((25, d * (K + 1)))
    design[:, :d] = rows
    for i, a in enumerate(actions):
        design[i, d * (a + 1) : d * (a + 2)] = rows[i]
    cov = np.linalg.inv(lam * np.eye(d * (K + 1)) + design.T @ design)
    Xq = np.random.default_rng(5).normal(size=(K, d))
    phi = np.zeros((K, d * (K + 1)))
    phi[:, :d] = Xq
    for a in range(K):
        phi[a, d * (a + 1) : d * (a + 2)] = Xq[a]
    expected = np.sqrt(np.einsum("ki,ij,kj->k", phi, cov, phi))
    scores = policy.score(Xq, np.random.default_rng(0))
    np.testing.assert_allclose(scores.uncertainty, expected, rtol=1e-8)


def test_linucb_learns_a_linear_world() -> None:
    """Chapter eq. 16.2 on a per-arm linear world: the last 200 rounds mostly pick the best arm."""
    K, d = 4, 3
    gen = np.random.default_rng(7)
    theta = gen.normal(size=(K, d))
    policy = make_policy("linucb", K, d, alpha=0.5)
    rng = np.random.default_rng(8)
    best = []
    for _ in range(1500):
        X = gen.normal(size=(K, d))
        mu = np.einsum("kd,kd->k", X, theta)
        c = policy.choose(X, rng)
        policy.update(c.action, X, float(mu[c.action] + 0.1 * gen.standard_normal()))
        best.append(c.action == int(np.argmax(mu)))
    assert np.mean(best[-200:]) > 0.9
