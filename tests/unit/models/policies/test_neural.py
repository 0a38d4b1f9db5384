"""Neural policies: the two-speed head equals a batch head on the buffer's features; dropout passes differ."""

from __future__ import annotations

import numpy as np
import torch

from models.policies.neural import MCDropout, NeuralLinearTS
from models.posterior import BayesianLinearHead, LinearHeadConfig

torch.set_num_threads(1)


def _feed(policy: NeuralLinearTS | MCDropout, n: int) -> None:
    gen = np.random.default_rng(0)
    for _ in range(n):
        X = gen.normal(size=(3, 2))
        a = int(gen.integers(3))
        policy.update(a, X, float(np.sin(X[a, 0]) + 0.1 * gen.standard_normal()))


def test_neural_linear_head_is_the_batch_head_on_current_features() -> None:
    """Between retrainings the fast head holds exactly the rows seen, on the current network's φ."""
    policy = NeuralLinearTS(3, 2, seed=1, retrain_every=20, steps=20, hidden=8)
    _feed(policy, 47)  # two retrainings (rows 20 and 40), then 7 fast updates
    batch = BayesianLinearHead(LinearHeadConfig(9, 1.0, 0.25))
    batch.update_batch(policy.phi(policy._X), policy._r)
    np.testing.assert_allclose(policy.head.precision, batch.precision, rtol=1e-10)
    np.testing.assert_allclose(policy.head.mean, batch.mean, rtol=1e-8, atol=1e-10)


def test_retraining_changes_the_network_and_fits_the_buffer() -> None:
    policy = NeuralLinearTS(3, 2, seed=2, retrain_every=200, steps=300, hidden=16)
    before = policy.phi(np.eye(2)).copy()
    _feed(policy, 200)
    assert not np.allclose(before, policy.phi(np.eye(2)))
    with torch.no_grad():
        pred = policy.net(torch.from_numpy(policy._X)).numpy()
    assert np.mean((pred - policy._r) ** 2) < np.var(policy._r)


def test_buffer_keeps_the_newest_rows() -> None:
    policy = MCDropout(3, 2, max_buffer=10, retrain_every=1000)
    _feed(policy, 25)
    assert policy._X.shape == (10, 2) and policy._r.shape == (10,)


def test_dropout_passes_differ_and_their_spread_is_the_uncertainty() -> None:
    policy = MCDropout(3, 2, seed=3, passes=16, dropout=0.3)
    scores = policy.score(np.ones((3, 2)), np.random.default_rng(0))
    assert np.all(scores.uncertainty > 0)
    again = policy.score(np.ones((3, 2)), np.random.default_rng(0))
    np.testing.assert_array_equal(scores.value, again.value)
