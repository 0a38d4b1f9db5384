"""Every registered policy through the same checks (after river's ``check_estimator``).

Parametrised over :func:`models.policies.registry.policy_names`, so a policy added later in any
module of ``models/policies/`` is covered with no edit here: snapshot round trip, seeded
reproducibility, incremental == batch posterior (where the policy exposes one), no exploration
equals the mean, propensities in (0, 1] and equal to the empirical choice frequencies.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from models.errors import ModelInputError, ShapeError
from models.policies.base import Policy
from models.policies.registry import make_policy, policy_class, policy_names

# One intra-op thread: the torch policies' tensors are a few rows, where a thread pool costs more
# than it saves (and on a shared 2-core machine its spinning threads slow every other test).
torch.set_num_threads(1)

K, D, ROUNDS = 4, 3, 60
NAMES = policy_names()


def _world(seed: int) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
    """A small logistic world: (ROUNDS, K, D) features, its true θ, and a reward generator."""
    gen = np.random.default_rng(1000 + seed)
    return gen.normal(size=(ROUNDS, K, D)), gen.normal(size=D), gen


def _play(policy: Policy, seed: int, rounds: int = ROUNDS) -> tuple[list[int], list[float], np.ndarray, np.ndarray]:
    """Run ``policy`` on the world of ``seed``: actions, propensities, features, rewards."""
    X, theta, gen = _world(seed)
    rng = np.random.default_rng(seed)
    actions, props, rewards = [], [], []
    for t in range(rounds):
        choice = policy.choose(X[t], rng)
        # 0/1 rewards: valid for Gaussian heads and for logistic (GLM) ones alike
        r = float(gen.random() < 1.0 / (1.0 + np.exp(-X[t, choice.action] @ theta)))
        policy.update(choice.action, X[t], r)
        actions.append(choice.action)
        props.append(choice.propensity)
        rewards.append(r)
    return actions, props, X[:rounds], np.asarray(rewards)


@pytest.mark.parametrize("name", NAMES)
def test_snapshot_round_trip_scores_equal(name: str) -> None:
    policy = make_policy(name, K, D, seed=3)
    _play(policy, seed=0)
    restored = type(policy).from_bytes(policy.to_bytes())
    assert restored.n_observations == policy.n_observations
    X = np.random.default_rng(9).normal(size=(K, D))
    s1 = policy.score(X, np.random.default_rng(5))
    s2 = restored.score(X, np.random.default_rng(5))
    for field in ("mean", "uncertainty", "value"):
        np.testing.assert_array_equal(getattr(s1, field), getattr(s2, field), err_msg=field)
    # and both continue identically (learning randomness travels with (seed, n_observations))
    for p in (policy, restored):
        p.update(1, X, 0.5)
    np.testing.assert_array_equal(
        policy.score(X, np.random.default_rng(6)).value, restored.score(X, np.random.default_rng(6)).value
    )


@pytest.mark.parametrize("name", NAMES)
def test_seeded_reproducibility(name: str) -> None:
    first = _play(make_policy(name, K, D, seed=4), seed=1)
    second = _play(make_policy(name, K, D, seed=4), seed=1)
    assert first[0] == second[0]
    assert first[1] == second[1]


@pytest.mark.parametrize("name", NAMES)
def test_incremental_update_equals_batch_posterior(name: str) -> None:
    policy = make_policy(name, K, D, seed=2)
    actions, _, X, rewards = _play(policy, seed=2)
    batch = type(policy).batch_posterior(K, D, np.asarray(actions), X, rewards, seed=2)
    if batch is None:
        pytest.skip(f"{name} exposes no batch posterior")
    incremental = policy.posterior()
    assert set(incremental) == set(batch)
    for key in batch:
        np.testing.assert_allclose(incremental[key], batch[key], rtol=1e-7, atol=1e-9, err_msg=key)


@pytest.mark.parametrize("name", NAMES)
def test_no_exploration_equals_the_mean(name: str) -> None:
    cls = policy_class(name)
    policy = cls(K, D, seed=5, **cls.greedy_params())
    _play(policy, seed=3, rounds=30)
    X = np.random.default_rng(11).normal(size=(K, D))
    rng = np.random.default_rng(12)
    scores = policy.score(X, rng)
    np.testing.assert_array_equal(scores.value, scores.mean)
    choice = policy.choose(X, np.random.default_rng(13))
    assert choice.action == int(np.argmax(choice.scores.mean))


@pytest.mark.parametrize("name", NAMES)
def test_propensities_lie_in_the_unit_interval(name: str) -> None:
    _, props, _, _ = _play(make_policy(name, K, D, seed=6, floor=0.05), seed=4)
    assert all(0.0 < p <= 1.0 for p in props)
    _, props, _, _ = _play(make_policy(name, K, D, seed=6), seed=4)
    assert all(0.0 < p <= 1.0 for p in props)


@pytest.mark.parametrize("name", NAMES)
def test_propensities_equal_the_empirical_choice_frequencies(name: str) -> None:
    """Closed form: within 3 SE of the frequencies; Monte Carlo: within 3 of their joint SE."""
    policy = make_policy(name, K, D, seed=7, floor=0.2)
    _play(policy, seed=5, rounds=20)
    X = np.random.default_rng(14).normal(size=(K, D)) * 0.3
    n = 3000 if policy.closed_form_propensity else 400
    chosen = np.zeros(K)
    props: dict[int, list[float]] = {}
    for s in range(n):
        c = policy.choose(X, np.random.default_rng(10_000 + s))
        chosen[c.action] += 1
        props.setdefault(c.action, []).append(c.propensity)
    for action, ps in props.items():
        p = float(np.mean(ps))
        if policy.closed_form_propensity:
            assert np.ptp(ps) < 1e-12, f"closed-form propensity of action {action} varies"
            se = np.sqrt(p * (1 - p) / n)
        else:
            draws = policy.params.propensity_draws
            se = np.sqrt(p * (1 - p) / n + p * (1 - p) / (draws * len(ps)) + np.var(ps) / len(ps))
        assert abs(chosen[action] / n - p) <= 3 * se + 1e-9, (action, chosen[action] / n, p, se)
    # the actions never chosen have a small probability: their total is consistent with zero hits
    unseen = [a for a in range(K) if a not in props]
    assert len(unseen) < K


@pytest.mark.parametrize("name", NAMES)
def test_bad_parameters_and_inputs_are_typed_errors(name: str) -> None:
    with pytest.raises(ModelInputError, match="not_a_parameter"):
        make_policy(name, K, D, not_a_parameter=1)
    with pytest.raises(ModelInputError, match="floor"):
        make_policy(name, K, D, floor=1.5)
    policy = make_policy(name, K, D)
    with pytest.raises(ShapeError):
        policy.choose(np.zeros((K + 1, D)), np.random.default_rng(0))
    with pytest.raises(ModelInputError, match="action"):
        policy.update(K, np.zeros((K, D)), 1.0)


# Each policy's own parameters, bad: (name, params, error, message).
BAD_PARAMETERS: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    ("linucb", {"alpha": -1.0}, ModelInputError, "alpha"),
    ("linucb", {"prior_precision": 0.0}, ModelInputError, "prior_precision"),
    ("linucb", {"gamma": 1.5}, ModelInputError, "gamma"),
    ("linucb", {"window": -2}, ModelInputError, "window"),
    ("linucb", {"window": 10, "gamma": 0.9}, ModelInputError, "not both"),
    ("lints", {"tau": -0.1}, ModelInputError, "tau"),
    ("lints", {"noise_variance": float("nan")}, ModelInputError, "noise_variance"),
    ("epsilon_greedy", {"epsilon": 1.2}, ModelInputError, "epsilon"),
    ("shared_linucb", {"alpha": float("inf")}, ModelInputError, "alpha"),
    ("shared_lints", {"gamma": 0.0}, ModelInputError, "gamma"),
    ("hybrid_linucb", {"prior_precision": -1.0}, ModelInputError, "prior_precision"),
    ("ensemble_ts", {"members": 1}, ModelInputError, "members"),
    ("ensemble_ts", {"mode": "greedy"}, ModelInputError, "mode"),
    ("ensemble_ts", {"beta": -1.0}, ModelInputError, "beta"),
    ("neural_linear_ts", {"hidden": 0}, ModelInputError, "hidden"),
    ("neural_linear_ts", {"retrain_every": 2.5}, ModelInputError, "retrain_every"),
    ("neural_linear_ts", {"lr": 0.0}, ModelInputError, "lr"),
    ("neural_linear_ts", {"tau": -1.0}, ModelInputError, "tau"),
    ("mc_dropout", {"dropout": 1.0}, ModelInputError, "dropout"),
    ("mc_dropout", {"passes": 1}, ModelInputError, "passes"),
    ("mc_dropout", {"weight_decay": -0.1}, ModelInputError, "weight_decay"),
]


@pytest.mark.parametrize(("name", "params", "error", "match"), BAD_PARAMETERS)
def test_bad_parameters_table(name: str, params: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        make_policy(name, K, D, **params)


def test_unknown_policy_name() -> None:
    with pytest.raises(ModelInputError, match="unknown policy"):
        make_policy("no_such_policy", K, D)
