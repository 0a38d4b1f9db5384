"""Linear policies against exact references: discount, window, Sherman–Morrison, the hybrid's variance."""

from __future__ import annotations

import numpy as np
import pytest

from models.policies.registry import make_policy


def _history(n: int, K: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    gen = np.random.default_rng(seed)
    return gen.integers(K, size=n), gen.normal(size=(n, K, d)), gen.normal(size=n)


@pytest.mark.parametrize("name", ["linucb", "lints", "epsilon_greedy"])
@pytest.mark.parametrize("params", [{}, {"gamma": 0.9}, {"window": 7}, {"prior_precision": 0.3, "noise_variance": 2.0}])
def test_per_arm_incremental_equals_batch(name: str, params: dict[str, float]) -> None:
    K, d = 3, 4
    actions, X, r = _history(40, K, d, seed=1)
    policy = make_policy(name, K, d, **params)
    for t in range(40):
        policy.update(int(actions[t]), X[t], float(r[t]))
    batch = type(policy).batch_posterior(K, d, actions, X, r, **params)
    assert batch is not None
    for key, value in policy.posterior().items():
        np.testing.assert_allclose(value, batch[key], rtol=1e-8, atol=1e-10)


def test_sherman_morrison_inverse_matches_the_inverse() -> None:
    K, d = 2, 5
    actions, X, r = _history(300, K, d, seed=2)
    policy = make_policy("linucb", K, d)
    for t in range(300):
        policy.update(int(actions[t]), X[t], float(r[t]))
    state = policy.snapshot_arrays()
    np.testing.assert_allclose(state["A_inv"], np.linalg.inv(state["A"]), rtol=1e-9, atol=1e-12)


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
