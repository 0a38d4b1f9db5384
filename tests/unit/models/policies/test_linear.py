"""Per-arm linear policies against exact references: discount, window, Sherman–Morrison."""

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
