"""Rounding: inclusion frequencies match x, caps hold in every sample, top mode is deterministic."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom, norm

from allocator.errors import ProblemValidationError
from allocator.instances import random_instance
from allocator.problem import AllocationProblem
from allocator.rounding import round_allocation


def fractional_x(p: AllocationProblem, seed: int) -> np.ndarray:
    """A feasible-for-caps fractional x, made here (not by a solver): random, scaled per user to sum <= k_u."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, p.n_pairs) ** 2
    s = np.bincount(p.user, weights=x, minlength=p.n_users)
    target = p.caps * rng.uniform(0.5, 1.0, p.n_users)
    x = np.minimum(1.0, x * np.where(s > target, target / s, 1.0)[p.user])
    x[rng.random(p.n_pairs) < 0.1] = 0.0
    x[:3] = [1.0, 0.0, 1.0] if p.user[0] == p.user[2] else x[:3]
    return x


@pytest.fixture(scope="module")
def problem() -> AllocationProblem:
    return random_instance(150, (3, 9), 10, 1, (1, 3), 0.7, seed=11)


def test_sample_frequencies_match_x_and_caps_always_hold(problem: AllocationProblem) -> None:
    x = fractional_x(problem, seed=1)
    rng = np.random.default_rng(12345)
    n = 2000
    counts = np.zeros(problem.n_pairs)
    per_user_sum = np.bincount(problem.user, weights=x, minlength=problem.n_users)
    for _ in range(n):
        r = round_allocation(problem, x, mode="sample", rng=rng)
        counts[r.pairs] += 1
        np.testing.assert_array_equal(r.propensity, x[r.pairs])
        per_user = np.bincount(problem.user[r.pairs], minlength=problem.n_users)
        assert (per_user <= np.floor(problem.caps)).all()
        # systematic sampling gives floor or ceil of the user's expected count
        assert (per_user >= np.floor(per_user_sum - 1e-9)).all() and (per_user <= np.ceil(per_user_sum + 1e-9)).all()
        assert len(np.unique(r.pairs)) == r.pairs.size
    freq = counts / n
    frac = (x > 0) & (x < 1)
    # exact two-sided binomial test per fractional pair, Bonferroni at family-wise level 1e-3
    lo_tail = binom.cdf(counts[frac], n, x[frac])
    hi_tail = binom.sf(counts[frac] - 1, n, x[frac])
    pvalue = np.minimum(1.0, 2 * np.minimum(lo_tail, hi_tail))
    assert pvalue.min() >= 1e-3 / frac.sum()
    # where the normal approximation holds (n x (1 - x) >= 10): within 3 standard errors, in
    # aggregate (mean squared z about 1), and no single pair beyond the Bonferroni bound
    normal = frac & (n * x * (1 - x) >= 10)
    z = (freq - x)[normal] / np.sqrt(x * (1 - x) / n)[normal]
    assert np.mean(np.abs(z) <= 3) >= 0.99
    assert np.abs(z).max() <= norm.ppf(1 - 1e-3 / (2 * normal.sum()))
    assert 0.8 <= np.mean(z**2) <= 1.2
    # pairs at 0 are never chosen, pairs at 1 always
    assert (counts[x == 0] == 0).all() and (counts[x == 1] == n).all()


def test_caps_hold_even_when_x_is_a_hair_over(problem: AllocationProblem) -> None:
    x = fractional_x(problem, seed=2)
    s = np.bincount(problem.user, weights=x, minlength=problem.n_users)
    x = np.minimum(1.0, x * (problem.caps / np.where(s > 0, s, 1))[problem.user] * (1 + 1e-12))
    rng = np.random.default_rng(5)
    for _ in range(200):
        r = round_allocation(problem, x, mode="sample", rng=rng)
        assert (np.bincount(problem.user[r.pairs], minlength=problem.n_users) <= problem.caps).all()


def test_top_mode_is_deterministic_and_capped(problem: AllocationProblem) -> None:
    x = fractional_x(problem, seed=3)
    a, b = round_allocation(problem, x, mode="top"), round_allocation(problem, x, mode="top")
    np.testing.assert_array_equal(a.pairs, b.pairs)
    assert (a.propensity == 1.0).all()
    per_user = np.bincount(problem.user[a.pairs], minlength=problem.n_users)
    assert (per_user <= problem.caps).all()
    for u in range(problem.n_users):  # the chosen are each user's largest x (x > 0), up to the cap
        mine = np.flatnonzero(problem.user == u)
        pos = mine[x[mine] > 0]
        k = int(min(problem.caps[u], pos.size))
        chosen = np.intersect1d(a.pairs, mine)
        assert chosen.size == k
        if k:
            assert x[chosen].min() >= np.sort(x[pos])[::-1][k - 1]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(mode="sample"), r"rng: sample mode needs a seeded numpy Generator"),
        (dict(mode="best", rng=np.random.default_rng(0)), r"mode: expected 'sample' or 'top'"),
    ],
)
def test_bad_arguments(problem: AllocationProblem, kwargs: dict, match: str) -> None:
    with pytest.raises(ProblemValidationError, match=match):
        round_allocation(problem, fractional_x(problem, 0), **kwargs)


def test_bad_x(problem: AllocationProblem) -> None:
    x = fractional_x(problem, 0)
    x[4] = np.nan
    with pytest.raises(ProblemValidationError, match=r"x: every entry must be finite and in \[0, 1\]"):
        round_allocation(problem, x, mode="top")
