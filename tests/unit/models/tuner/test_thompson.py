"""The utility, Thompson probabilities and one tuning step, against hand-computed and brute-force truths."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from models.errors import ModelInputError, ShapeError
from models.tuner.cohort import CohortObservations, cohort_distributions
from models.tuner.config import Guardrail, TunerConfig
from models.tuner.thompson import (
    ParameterDistribution,
    arm_id,
    candidate_set,
    draw_joint,
    thompson_distribution,
    thompson_probabilities,
    utility,
)


def test_utility_hand_cases() -> None:
    rails = (Guardrail(0.5, ">="), Guardrail(2.0, "<="))
    f1 = np.array([1.0, 2.0, 3.0, 4.0])
    g = np.array([[0.5, 0.4, 0.9, 0.6], [2.0, 1.0, 2.1, 3.0]])
    # 1: both met (0.5 >= 0.5, 2.0 <= 2.0); 2: only the second; 3: only the first; 4: only the first
    np.testing.assert_array_equal(utility(f1, g, rails, 10.0), [21.0, 12.0, 13.0, 14.0])
    assert utility(np.array(7.0), np.zeros((0,)), (), 10.0) == 7.0
    with pytest.raises(ShapeError):
        utility(f1, g[:1], rails, 10.0)


def test_probabilities_equal_brute_force_count_over_the_same_draws() -> None:
    rng = np.random.default_rng(5)
    U = rng.normal(size=(3000, 17)) + np.linspace(0, 1, 17)
    p = thompson_probabilities(U)
    counts = np.zeros(17)
    for s in range(U.shape[0]):
        best = 0
        for j in range(1, 17):
            if U[s, j] > U[s, best]:
                best = j
        counts[best] += 1
    np.testing.assert_array_equal(p, counts / 3000)
    assert p.sum() == pytest.approx(1.0)


def test_two_candidate_probability_matches_the_normal_cdf() -> None:
    # independent N(0.3, 1) and N(0, 1): P(first wins) = Φ(0.3 / √2)
    mean, cov = np.array([0.3, 0.0]), np.eye(2)
    draws = draw_joint(mean, cov, 200_000, np.random.default_rng(0), 0.0)
    p = thompson_probabilities(draws)
    truth = norm.cdf(0.3 / np.sqrt(2.0))
    assert abs(p[0] - truth) < 3 * np.sqrt(truth * (1 - truth) / 200_000)


def test_draws_have_the_posterior_covariance() -> None:
    rng = np.random.default_rng(1)
    A = rng.normal(size=(5, 5))
    cov = A @ A.T + 0.1 * np.eye(5)
    mean = rng.normal(size=5)
    draws = draw_joint(mean, cov, 100_000, np.random.default_rng(2), 0.0)
    np.testing.assert_allclose(draws.mean(0), mean, atol=0.05)
    np.testing.assert_allclose(np.cov(draws.T), cov, rtol=0.05, atol=0.05)


def problem(seed: int = 0) -> tuple[np.ndarray, np.ndarray, TunerConfig]:
    """A primary peaked at (0.6, 0.6) under the guardrail x + y ≤ 1: the constrained optimum is (0.5, 0.5)."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(30, 2))
    f1 = -((X - 0.6) ** 2).sum(1)
    Y = np.c_[f1 + 0.01 * rng.normal(size=30), X.sum(1) + 0.01 * rng.normal(size=30)]
    cfg = TunerConfig(
        bounds=((0.0, 1.0), (0.0, 1.0)), guardrails=(Guardrail(1.0, "<="),), n_samples=512, n_candidates=256
    )
    return X, Y, cfg


def test_one_step_is_seeded_and_finds_the_constrained_optimum() -> None:
    X, Y, cfg = problem()
    dist = thompson_distribution(X, Y, cfg)
    assert dist.points.shape == (256 + 30, 2)
    assert dist.probs.sum() == pytest.approx(1.0)
    np.testing.assert_array_equal(dist.points[256:], np.unique(X, axis=0))
    again = thompson_distribution(X, Y, cfg)
    np.testing.assert_array_equal(dist.probs, again.probs)
    assert dist.arm_ids == again.arm_ids
    other = thompson_distribution(X, Y, TunerConfig(**{**cfg.__dict__, "seed": 9}))
    assert not np.array_equal(dist.probs[:256], other.probs[:256])
    near = np.linalg.norm(dist.points - 0.5, axis=1) < 0.1
    assert dist.probs[near].sum() > 0.8
    assert np.linalg.norm(dist.mode - 0.5) < 0.1


def test_candidates_and_ids() -> None:
    cfg = TunerConfig(bounds=((2.0, 3.0), (-1.0, 0.0)), n_candidates=64)
    c = candidate_set(cfg)
    assert c.shape == (64, 2)
    assert np.all((c[:, 0] >= 2.0) & (c[:, 0] <= 3.0) & (c[:, 1] >= -1.0) & (c[:, 1] <= 0.0))
    np.testing.assert_array_equal(c, candidate_set(cfg))
    assert arm_id(c[0]) == arm_id(c[0].copy()) != arm_id(c[1])
    dist = ParameterDistribution.of(c[:2], [0.25, 0.75])
    assert dist.arm_ids == (arm_id(c[0]), arm_id(c[1]))
    assert not dist.probs.flags.writeable
    with pytest.raises(ModelInputError):
        ParameterDistribution.of(c[:2], [0.5, 0.6])


def test_config_validation() -> None:
    with pytest.raises(ModelInputError):
        TunerConfig(bounds=((1.0, 0.0),))
    with pytest.raises(ModelInputError):
        TunerConfig(bounds=((0.0, 1.0),), lam=0.0)
    with pytest.raises(ModelInputError):
        Guardrail(1.0, ">")  # type: ignore[arg-type]


def test_cohorts_are_tuned_on_their_own_data() -> None:
    rng = np.random.default_rng(4)
    cohorts = {}
    for name, peak in (("a", 0.2), ("b", 0.8)):
        x = rng.uniform(size=(20, 1))
        y = -((x[:, 0] - peak) ** 2) + 0.005 * rng.normal(size=20)
        cfg = TunerConfig(bounds=((0.0, 1.0),), n_samples=256, n_candidates=64, seed=1)
        cohorts[name] = CohortObservations(x, y[:, None], cfg)
    dists = cohort_distributions(cohorts)
    assert abs(dists["a"].mode[0] - 0.2) < 0.1
    assert abs(dists["b"].mode[0] - 0.8) < 0.1
